"""The evaluation's pairwise judge: its own model when configured, else the teacher.

A judge that is the judged (in the demo the teacher is the student's own base model) answers by
position; `reflection_assets.evaluation.report` measures that. This resource only names the judge;
`resolve` gives the Teacher that answers (the same interface, `choose`).
"""

from __future__ import annotations

from typing import Optional

import dagster as dg
from pydantic import Field

from resources.teacher import Teacher

MASK = "***"


class JudgeModel(dg.ConfigurableResource):
    """Empty fields: the teacher judges. `base_url` + `model`: a served judge; `model` alone: a local one."""

    base_url: str = Field(default="", description="OpenAI-compatible server of the judge ('' = not served).")
    model: str = Field(default="", description="The judge: a served name, or a local reference ('' = the teacher).")
    api_key: Optional[str] = Field(default=None, description="Bearer key of the judge's server (a secret).")

    def __repr_args__(self):  # type: ignore[no-untyped-def]
        yield from super().__repr_args__()
        yield "api_key", MASK if self.api_key else None

    @property
    def is_teacher(self) -> bool:
        return not (self.base_url or self.model)

    def resolve(self, teacher: Teacher) -> Teacher:
        """The Teacher that judges: this resource's model, or `teacher` when none is set."""
        if self.base_url:
            from resources.teacher_http import OpenAICompatibleTeacher

            return OpenAICompatibleTeacher(base_url=self.base_url, model=self.model, api_key=self.api_key)
        if self.model:
            from resources.teacher_local import TransformersTeacher

            return TransformersTeacher(model_ref=self.model)
        return teacher
