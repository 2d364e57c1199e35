"""The progress display: plain lines off a terminal, one live line on it, nothing when off."""

import io
import logging

from harness.config import compose
from harness.progress import Display, LogLine, Snapshot, latency, plan, running_text


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def running(completed: int, elapsed: float, expected: int | None = 100, **kw) -> Snapshot:
    return Snapshot("performance", "running", elapsed_s=elapsed, scenario="Server", mode="performance",
                    issued=completed + 3, completed=completed, expected=expected, queries=expected,
                    min_duration_s=5.0, target_qps=10.0, **kw)


def test_plain_lines_at_loading_start_each_tenth_and_every_10_s():
    clock, out = Clock(), io.StringIO()
    watch = Display(stream=out, clock=clock).test("performance")
    assert out.getvalue() == ""  # no line for the process start itself
    clock.now += 2
    watch.update(Snapshot("performance", "loading", elapsed_s=0.5, what="sut=hf"))
    clock.now += 3
    watch.update(running(0, 0.1))  # LoadGen started: announced with its expected count
    clock.now += 1
    watch.update(running(5, 1.1))  # 5% more: no line
    clock.now += 1
    watch.update(running(12, 2.1))  # 12% more than the last line: a line
    clock.now += 0.5
    watch.update(running(30, 2.6))  # another tenth, but within a second of the last line: not yet
    clock.now += 0.5
    watch.update(None)  # a second after the last line: now (the elapsed time moves on between messages)
    for _ in range(9):  # a stall: nothing new for 9 s
        clock.now += 1
        watch.update(None)
    clock.now += 1
    watch.update(None)  # 10 s without a line: one, to show it is alive
    watch.done(100, 100, 0)
    lines = out.getvalue().splitlines()
    assert lines[0] == "performance  loading sut=hf · 0.5 s"
    assert lines[1].startswith("performance  Server 0/100 completed · 3 issued · 0.1 s of at least 10 s")
    assert lines[2].startswith("performance  Server 12/100 completed · 15 issued · 2.1 s")
    assert lines[3].startswith("performance  Server 30/100 completed · 33 issued · 3.1 s")
    assert lines[4].startswith("performance  Server 30/100 completed · 33 issued · 13 s")
    assert lines[5].startswith("performance  done: 100 of 100 samples completed (LoadGen 2.6 s, 18 s with")
    assert len(lines) == 6
    assert "\r" not in out.getvalue()


def test_on_a_terminal_one_live_line_at_most_once_a_second():
    clock, out = Clock(), Terminal()
    display = Display(stream=out, clock=clock)
    watch = display.test("performance")
    watch.update(Snapshot("performance", "loading", what="sut=hf"))  # a new phase is drawn at once
    clock.now += 0.3
    watch.update(running(1, 0.1))  # new phase: drawn
    clock.now += 0.3
    watch.update(running(2, 0.4))  # within a second: not drawn
    clock.now += 0.8
    watch.update(running(3, 1.2))
    draws = out.getvalue().split("\r")
    assert [d for d in draws if "completed" in d] == [
        "performance  Server 1/100 completed · 4 issued · 0.1 s of at least 10 s\x1b[K",
        "performance  Server 3/100 completed · 6 issued · 1.2 s of at least 10 s\x1b[K"]
    assert "\n" not in out.getvalue()
    display.line("a permanent line")  # the live line makes way
    assert out.getvalue().endswith("\r\x1b[Ka permanent line\n")


def test_off_prints_nothing():
    out = Terminal()
    display = Display(enabled=False, stream=out)
    watch = display.test("performance")
    watch.update(running(1, 0.1))
    watch.done(1, 1, 0)
    with display.task("accuracy", "scoring"):
        pass
    display.line("plan")
    assert out.getvalue() == ""


def test_a_task_says_how_long_it_took():
    clock, out = Clock(), io.StringIO()
    display = Display(stream=out, clock=clock, label="[job 2/3]")
    with display.task("accuracy", "scoring 32 samples (ROUGE)", "scored 32 samples (ROUGE)"):
        clock.now += 3.5
    with display.task("roofline", "estimating", min_s=1.0):
        clock.now += 0.2
    assert out.getvalue() == "[job 2/3]  accuracy     scored 32 samples (ROUGE) in 3.5 s\n"


def test_a_test_process_log_line_goes_to_this_process_logging(caplog):
    watch = Display(stream=io.StringIO()).test("performance")
    with caplog.at_level(logging.INFO, logger="harness.sut.hf.adapter"):
        watch.update(LogLine("harness.sut.hf.adapter", logging.INFO, "sut=hf: loaded", 1_700_000_000.0))
    assert [(r.name, r.getMessage(), r.created) for r in caplog.records] == [
        ("harness.sut.hf.adapter", "sut=hf: loaded", 1_700_000_000.0)]


def test_running_latency_bounds_read_as_a_value_an_upper_bound_or_a_range():
    assert latency((0.41, 0.43)) == "~420 ms"
    assert latency((0.0, 0.0612)) == "≤ 61.2 ms"
    assert latency((0.2, 0.5)) == "200 ms to 500 ms"
    assert latency((1.5, 1.6)) == "~1.55 s"
    assert latency(None) is None
    text = running_text(running(40, 3.0, ttft_s=(0.40, 0.44), tpot_s=(0.0, 0.0025), errors=2), 3.0)
    assert text == ("Server 40/100 completed · 43 issued · 3.0 s of at least 10 s · 2 failed · TTFT p50 ~420 ms · "
                    "TPOT p50 ≤ 2.5 ms")


def test_the_plan_says_how_long_the_performance_test_takes_at_least():
    server = compose(["scenario=server", "scenario.target_qps=4"])
    assert "Poisson arrivals at 4 QPS until at least 500 queries and 5 s: at least 2 min 05 s" in \
        plan(server, 32, ("performance", "accuracy"))
    assert "then accuracy test (32 samples)" in plan(server, 32, ("performance", "accuracy"))
    offline = compose(["scenario=offline"])
    assert "performance test (one query of at least 32 samples)" in plan(offline, 32, ("performance",))
    official = compose(["benchmark=llama3_1-8b", "benchmark.official=true"])
    assert "at least its min duration, 600 s" in plan(official, 13368, ("performance",))
