"""perk.tracking_guard without a server: the outbox queues while tracking is down, delivers in order
when it is back, and names what it could not deliver; an unreachable URI fails fast."""
import json
import time

import pytest

from perk import tracking_guard as tg


@pytest.fixture()
def server(monkeypatch):
    """A fake delivery: records what arrives, raises while `down`; counts attempts."""
    state = {"down": False, "attempts": 0, "got": []}

    def deliver(run_id, item):
        state["attempts"] += 1
        if state["down"]:
            raise ConnectionError("[Errno 111] Connection refused")
        state["got"].append((run_id, item[0], item[2:]))
    monkeypatch.setattr(tg, "_deliver", deliver)
    return state


def test_queues_while_down_then_delivers_everything_in_order(server, monkeypatch, capsys):
    monkeypatch.setattr(tg, "RETRY_S", 0.0)  # retry on every call
    box = tg.Outbox()
    box.send("r", "metrics", {"loss": 1.0}, 1)
    server["down"] = True
    box.send("r", "metrics", {"loss": 2.0}, 2)
    box.send("r", "artifact", "/x/perk.safetensors", "perk")
    err = capsys.readouterr().err
    assert err.count("stopped answering") == 1 and "Connection refused" in err
    server["down"] = False
    box.send("r", "metrics", {"loss": 3.0}, 3)
    assert [g[1:] for g in server["got"]] == [("metrics", ({"loss": 1.0}, 1)), ("metrics", ({"loss": 2.0}, 2)),
                                              ("artifact", ("/x/perk.safetensors", "perk")),
                                              ("metrics", ({"loss": 3.0}, 3))]
    assert "answers again" in capsys.readouterr().err
    assert not box.pending and box.report("r", "meta_train", "http://h", None) is None


def test_no_attempts_during_the_cooldown(server, monkeypatch):
    monkeypatch.setattr(tg, "RETRY_S", 3600.0)
    box = tg.Outbox()
    server["down"] = True
    for step in range(50):
        box.send("r", "metrics", {"loss": float(step)}, step)
    assert server["attempts"] == 1, "a dead server must cost one attempt per RETRY_S, not one per call"
    assert len(box.pending["r"]) == 50


def test_report_names_what_was_not_logged_and_keeps_it(server, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(tg, "RETRY_S", 3600.0)
    box = tg.Outbox()
    server["down"] = True
    for step in (5, 6, 7):
        box.send("r1", "metrics", {"loss": 1.0, "val_em": 0.5}, step)
    box.send("r1", "artifact", "/d/perk.safetensors", "perk")
    box.pending["r1"].append(("terminate", time.time(), "FINISHED"))
    msg = box.report("r1", "meta_train", "http://h:1", tmp_path)
    assert "NOT logged to run r1: 6 values of 2 metrics (loss, val_em, steps 5-7)" in msg
    assert "artifact perk.safetensors" in msg and "run status FINISHED" in msg
    kept = json.loads((tmp_path / "r1.json").read_text())
    assert kept["steps_by_metric"] == {"loss": [5, 6, 7], "val_em": [5, 6, 7]}
    assert sorted(v[:3] for v in kept["values"]) == sorted([k, v, s] for s in (5, 6, 7)
                                                           for k, v in (("loss", 1.0), ("val_em", 0.5)))
    assert msg in capsys.readouterr().err


def test_unreachable_server_fails_fast_naming_the_uri():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    t0 = time.monotonic()
    with pytest.raises(tg.TrackingUnavailable, match=f"MLflow tracking server {uri} is not answering"):
        tg.check_reachable(uri)
    assert time.monotonic() - t0 < 10
    tg.check_reachable("sqlite:///nowhere/mlflow.db")  # a local store needs no server
