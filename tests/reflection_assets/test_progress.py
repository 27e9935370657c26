from reflection_assets.progress import Progress, format_duration


def test_progress_logs_rate_and_eta_and_always_the_last_line():
    lines: list[str] = []
    progress = Progress(lines.append, "scoring", every_s=3600)
    progress.update(1, 4)
    progress.update(2, 4)  # throttled
    progress.update(4, 4)
    assert len(lines) == 2
    assert lines[0].startswith("scoring: 1/4 rows (") and "ETA" in lines[0]
    assert lines[-1].startswith("scoring: 4/4 rows")


def test_format_duration():
    assert format_duration(75) == "1m15s"
    assert format_duration(3725) == "1h02m05s"
