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


def test_progress_throttles_by_clock_and_computes_rate_and_eta():
    now = [0.0]
    lines: list[str] = []
    progress = Progress(lines.append, "scored", unit="tokens", every_s=10.0, clock=lambda: now[0])
    now[0] = 2.0
    progress(100, 1000)  # the first call always logs
    now[0] = 5.0
    progress(200, 1000)  # throttled
    now[0] = 20.0
    progress(400, 1000)
    progress(1000, 1000)  # the end always logs
    assert lines[0] == "scored: 100/1000 tokens (50.00 tokens/s, ETA 0m18s)"
    assert lines[1] == "scored: 400/1000 tokens (20.00 tokens/s, ETA 0m30s)"
    assert len(lines) == 3 and "ETA 0m00s" in lines[2]
