"""The Teacher resource: the LLM that writes reflections, behind one small interface.

Implementations: an OpenAI-compatible HTTP client (`resources.teacher_http`), an in-process
transformers model (`resources.teacher_local`) and a scripted one answering from canned replies
(`resources.teacher_scripted`, for tests). `reflection_assets.deployment.build_teacher` picks
the one a deployment configured; this base never imports its subclasses.
"""

from __future__ import annotations

from abc import ABC

import dagster as dg

from reflection_assets.teacher.backend import TeacherBackend


class Teacher(dg.ConfigurableResource, TeacherBackend, ABC):
    """Abstract teacher resource: subclasses implement cache_identity, complete and choose."""
