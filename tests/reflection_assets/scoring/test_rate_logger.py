from reflection_assets.scoring.progress import RateLogger, format_eta


def test_rate_logger_throttles_and_reports_rate_and_eta():
    now = [0.0]
    lines = []
    log = RateLogger(lines.append, every_s=10.0, clock=lambda: now[0])
    now[0] = 2.0
    log(100, 1000)  # first call always logs
    now[0] = 5.0
    log(200, 1000)  # throttled
    now[0] = 20.0
    log(400, 1000)
    log(1000, 1000)  # the end always logs
    assert len(lines) == 3
    assert lines[0] == "scored 100/1,000 tokens (10.0%), 50 tok/s, ETA 0:00:18"
    assert lines[1].startswith("scored 400/1,000 tokens (40.0%), 20 tok/s, ETA 0:00:30")
    assert "ETA 0:00:00" in lines[2]


def test_format_eta():
    assert format_eta(3725) == "1:02:05"
