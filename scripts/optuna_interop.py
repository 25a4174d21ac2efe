"""Optuna's journal, side by side: Python Optuna (the reference) and autoglm-tune read
and write the same files (issue 28, point 1).

usage: python scripts/optuna_interop.py --bin target/debug/examples/optuna_journal \
           [--asset PATH/4.0.0.dev.log | --fetch-to DIR] [--lines 10000]

Checks, each failing the run with a message:
1. Optuna's own compatibility journal (tests/storages_tests/journal_tests/assets in
   Optuna's sdist) replays in ours to the same studies and trials as in Optuna, and
   every assertion of Optuna's test_log_compatibility.py holds on our replay.
2. A journal written by Optuna (several studies, a deleted one, multi-objective,
   enqueued trials, pruned/failed/running trials, NaN and infinite values, unicode
   attributes, every distribution kind) replays in ours to what Optuna loads, and
   every line written again by ours has the same bytes.
3. A journal written by ours loads in Optuna to what ours replays.
4. A Python writer and ours append LINES lines to one file at the same time, under
   Optuna's lock: every line intact, none lost, each writer's attributes all there.
5. A Python Optuna worker and ours run trials of one study at once (enqueued trials
   evaluated once each).
6. With --redis, 2-5 again through Optuna's JournalRedisBackend and ours on one
   redis-server, each of our values byte for byte what Python's json.dumps writes.
7. A study written alone to a new journal by ours (Storage::snapshot) loads in
   Optuna as the original.
8. Artifacts: ours uploads to a FileSystemArtifactStore and Optuna lists and
   downloads it; Optuna uploads and ours lists and downloads it.
9. With --dashboard, optuna-dashboard serves a study our study loop wrote (its API
   returns our trials), with --screenshot a picture of it by headless Chromium.
"""
import argparse
import datetime
import json
import math
import os
import subprocess
import sys
import tempfile
import threading

import optuna
from optuna.distributions import distribution_to_json
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

optuna.logging.set_verbosity(optuna.logging.ERROR)
import warnings  # noqa: E402

warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def run(bin_, *args):
    out = subprocess.run([bin_, *map(str, args)], check=True, capture_output=True, text=True)
    return out.stdout


def to_local_naive(s):
    return None if s is None else datetime.datetime.fromisoformat(s).astimezone().replace(tzinfo=None)


def python_view(storage):
    """What Optuna loads, in the shape of our `dump`."""
    if isinstance(storage, str):
        storage = JournalStorage(JournalFileBackend(storage))
    out = []
    for fs in sorted(storage.get_all_studies(), key=lambda s: s._study_id):
        sid = fs._study_id
        trials = []
        for t in storage.get_all_trials(sid, deepcopy=False):
            trials.append({
                "id": t._trial_id, "number": t.number, "state": int(t.state), "values": t.values,
                "params": dict(t.params),
                "distributions": {k: distribution_to_json(d) for k, d in t.distributions.items()},
                "user_attrs": t.user_attrs, "system_attrs": t.system_attrs,
                "intermediate_values": {str(k): v for k, v in t.intermediate_values.items()},
                "datetime_start": t.datetime_start, "datetime_complete": t.datetime_complete,
            })
        out.append({"id": sid, "name": fs.study_name, "directions": [int(d) for d in fs.directions],
                    "user_attrs": fs.user_attrs, "system_attrs": fs.system_attrs, "trials": trials})
    return out


def same(a, b, where):
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            sys.exit(f"FAIL {where}: lengths {len(a)} != {len(b)}: {a!r} vs {b!r}")
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{where}[{i}]")
        return
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            sys.exit(f"FAIL {where}: keys {sorted(a)} != {sorted(b)}")
        for k in a:
            same(a[k], b[k], f"{where}.{k}")
        return
    if type(a) is bool or type(b) is bool:
        ok = type(a) is type(b) and a == b
    else:
        ok = a == b
    if not ok:
        sys.exit(f"FAIL {where}: {a!r} != {b!r}")


def compare(ours_text, path, what):
    ours = json.loads(ours_text)
    py = python_view(path)
    for s in ours:
        for t in s["trials"]:
            t["datetime_start"] = to_local_naive(t["datetime_start"])
            t["datetime_complete"] = to_local_naive(t["datetime_complete"])
    same(ours, py, what)
    n = sum(len(s["trials"]) for s in py)
    print(f"ok  {what}: {len(py)} studies, {n} trials identical in Optuna {optuna.__version__} and ours")
    return ours


def check_asset(bin_, asset):
    ours = compare(run(bin_, "dump", asset), asset, "Optuna's compatibility journal")
    by = {s["name"]: s for s in ours}
    # test_log_compatibility.py's assertions, on our replay.
    assert by["single_empty"]["directions"] == [1] and by["single_empty"]["user_attrs"] == {}
    assert by["single_empty"]["trials"] == []
    assert len(ours) == 4 and "single_to_be_deleted" not in by
    assert by["single_user_attr"]["user_attrs"]["a"] == 1 and len(by["single_user_attr"]["user_attrs"]) == 3
    assert by["single_system_attr"]["system_attrs"]["A"] == 1 and len(by["single_system_attr"]["system_attrs"]) == 3
    trials = by["single_optimization"]["trials"]
    assert len(trials) == 10
    for t in trials:
        p = t["params"]
        assert -5 <= p["x"] <= 5 and 0 <= p["y"] <= 10 and p["z"] in (-5, 0, 5)
        assert t["state"] == 1 and 0 <= t["values"][0] <= 150
        assert t["intermediate_values"] == {"0": 0.5}
        assert t["user_attrs"][f"a_{t['number']}"] == 0 and t["system_attrs"][f"b_{t['number']}"] == 1
    print("ok  test_log_compatibility.py's assertions hold on our replay")


def python_journal(storage):
    if isinstance(storage, str):
        storage = JournalStorage(JournalFileBackend(storage))
    s = optuna.create_study(study_name="py-single", storage=storage, sampler=optuna.samplers.TPESampler(seed=1))
    s.set_user_attr("note", "é ☃ \u0001")
    s.set_user_attr("inf", float("inf"))
    s.enqueue_trial({"x": 1.5, "c": "b"})

    def objective(t):
        x = t.suggest_float("x", -5, 5)
        t.suggest_float("lr", 1e-5, 1e-1, log=True)
        t.suggest_float("q", 0, 1, step=0.25)
        t.suggest_int("n", 1, 9, step=2)
        t.suggest_int("m", 1, 64, log=True)
        t.suggest_categorical("c", ["a", "b", "c"])
        t.suggest_categorical("k", [1, 2.5, False])
        t.set_user_attr("tup", (1, 2))
        for step in range(3):
            t.report(float("nan") if step == 1 else x * step, step)
        if t.number == 3:
            raise optuna.TrialPruned()
        if t.number == 4:
            raise RuntimeError("a failed trial")
        return x * x
    s.optimize(objective, n_trials=8, catch=(RuntimeError,))
    m = optuna.create_study(study_name="py-multi", storage=storage, directions=["minimize", "maximize"])
    m.optimize(lambda t: (t.suggest_float("x", 0, 1), float("inf")), n_trials=2)
    m.ask()  # left running
    optuna.create_study(study_name="py-gone", storage=storage)
    optuna.delete_study(study_name="py-gone", storage=storage)


def check_python_written(bin_, d):
    path = os.path.join(d, "python.log")
    python_journal(path)
    compare(run(bin_, "dump", path), path, "a journal Optuna wrote")
    lines = open(path, encoding="utf-8").read().splitlines()
    echoed = run(bin_, "echo", path).splitlines()
    if lines != echoed:
        bad = next(i for i, (a, b) in enumerate(zip(lines, echoed)) if a != b) if len(lines) == len(echoed) else -1
        sys.exit(f"FAIL echo: line {bad + 1} differs:\n  optuna: {lines[bad]}\n  ours:   {echoed[bad]}")
    print(f"ok  every one of its {len(lines)} lines written again by ours has Optuna's bytes")


def check_ours_written(bin_, d):
    path = os.path.join(d, "ours.log")
    run(bin_, "write", path)
    compare(run(bin_, "dump", path), path, "a journal ours wrote, loaded by Optuna")


def check_concurrent(bin_, d, lines):
    path = os.path.join(d, "shared.log")
    storage = JournalStorage(JournalFileBackend(path))
    study = optuna.create_study(study_name="shared", storage=storage)
    sid = study._study_id
    half = lines // 2
    rust = subprocess.Popen([bin_, "append", path, "shared", str(half)])

    def py():
        st = JournalStorage(JournalFileBackend(path))
        for i in range(half):
            st.set_study_user_attr(sid, f"py_{i}", i)
    th = threading.Thread(target=py)
    th.start()
    th.join()
    if rust.wait() != 0:
        sys.exit("FAIL concurrent: the Rust writer failed")
    raw = open(path, "rb").read().split(b"\n")
    assert raw[-1] == b"", "the file ends inside a line"
    for i, l in enumerate(raw[:-1]):
        json.loads(l)  # every line intact
    attrs = JournalStorage(JournalFileBackend(path)).get_study_user_attrs(sid)
    want = {f"py_{i}": i for i in range(half)} | {f"rs_{i}": i for i in range(half)}
    if attrs != want:
        sys.exit(f"FAIL concurrent: {len(want) - len(set(attrs) & set(want))} attributes missing")
    ours = json.loads(run(bin_, "dump", path))
    if {k: v for k, v in ours[0]["user_attrs"].items()} != want:
        sys.exit("FAIL concurrent: our replay differs")
    print(f"ok  {2 * half} lines appended by Optuna and ours at once: none lost, none torn")


ASSET = "tests/storages_tests/journal_tests/assets/4.0.0.dev.log"
ASSET_SHA256 = "e89bcccaf1e3a730058295d4fb2ad9ffc54f2581e2c8594acde61b58d352db14"


def fetch_asset(dest):
    """Optuna's compatibility journal from the sdist of the installed Optuna on PyPI
    (never committed here); checked against the hash it had when this was written."""
    import hashlib
    import io
    import tarfile
    import urllib.request
    version = optuna.__version__
    # The simple index (PEP 691), which pip itself reads.
    req = urllib.request.Request("https://pypi.org/simple/optuna/",
                                 headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    files = json.load(urllib.request.urlopen(req, timeout=60))["files"]
    url = next(f["url"] for f in files if f["filename"] == f"optuna-{version}.tar.gz")
    data = urllib.request.urlopen(url, timeout=120).read()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith(ASSET))
        body = tar.extractfile(member).read()
    digest = hashlib.sha256(body).hexdigest()
    if digest != ASSET_SHA256:
        sys.exit(f"FAIL: {ASSET} in optuna {version}'s sdist has sha256 {digest}, not {ASSET_SHA256}")
    os.makedirs(dest, exist_ok=True)
    path = os.path.join(dest, "4.0.0.dev.log")
    with open(path, "wb") as f:
        f.write(body)
    return path


def check_redis(bin_, d, lines):
    """The same through Optuna's JournalRedisBackend on a redis-server of our own."""
    import socket
    import redis as redis_py
    from optuna.storages.journal import JournalRedisBackend
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no"], cwd=d, stdout=subprocess.DEVNULL)
    try:
        url = f"redis://127.0.0.1:{port}/0"
        r = redis_py.Redis.from_url(url)
        for _ in range(200):
            try:
                r.ping()
                break
            except redis_py.ConnectionError:
                import time
                time.sleep(0.05)
        py = JournalStorage(JournalRedisBackend(url, prefix="py"))
        python_journal(py)
        compare(run(bin_, "dump", url + "#py"), py, "a Redis journal Optuna wrote")
        run(bin_, "write", url + "#rs")
        compare(run(bin_, "dump", url + "#rs"), JournalStorage(JournalRedisBackend(url, prefix="rs")),
                "a Redis journal ours wrote, loaded by Optuna")
        n = int(r.get("rs:log_number"))
        for i in range(n + 1):
            v = r.get(f"rs:log:{i}").decode()
            if v != json.dumps(json.loads(v)):
                sys.exit(f"FAIL redis: our line {i} is not what Python writes:\n  {v}\n  {json.dumps(json.loads(v))}")
        print(f"ok  each of our {n + 1} Redis values has the bytes Python's json.dumps gives it")
        # Both at once, as in the file check.
        st = JournalStorage(JournalRedisBackend(url, prefix="sh"))
        sid = optuna.create_study(study_name="shared", storage=st)._study_id
        half = lines // 2
        rust = subprocess.Popen([bin_, "append", url + "#sh", "shared", str(half)])
        for i in range(half):
            st.set_study_user_attr(sid, f"py_{i}", i)
        if rust.wait() != 0:
            sys.exit("FAIL redis concurrent: the Rust writer failed")
        want = {f"py_{i}": i for i in range(half)} | {f"rs_{i}": i for i in range(half)}
        fresh = JournalStorage(JournalRedisBackend(url, prefix="sh"))
        if fresh.get_study_user_attrs(sid) != want:
            sys.exit("FAIL redis concurrent: attributes missing")
        if json.loads(run(bin_, "dump", url + "#sh"))[0]["user_attrs"] != want:
            sys.exit("FAIL redis concurrent: our replay differs")
        print(f"ok  {2 * half} Redis appends by Optuna and ours at once: none lost")
        check_shared_study(bin_, JournalStorage(JournalRedisBackend(url, prefix="both")), url + "#both",
                           "one study, two workers, Redis")
    finally:
        server.kill()
        server.wait()


RUSTUNA_WORKER = """
import sys, rustuna
study = rustuna.create_study(study_name="both", storage=rustuna.storages.JournalFileStorage(sys.argv[1]),
                             load_if_exists=True, sampler=rustuna.samplers.TPESampler(seed=5))
def objective(t):
    x = t.suggest_float("x", -5, 5)
    k = t.suggest_int("n", 1, 8)
    c = t.suggest_categorical("c", ["a", "b"])
    return x * x + k + (c == "b")
study.optimize(objective, n_trials=int(sys.argv[2]))
"""


def check_shared_study(bin_, storage, spec, what, n=10, rustuna=False):
    """A Python Optuna worker and ours (and with `rustuna`, a Rustuna worker) run
    trials of one study at once; three trials enqueued by Python are claimed once
    each, by whichever worker came first."""
    study = optuna.create_study(study_name="both", storage=storage, sampler=optuna.samplers.TPESampler(seed=3))
    for x in (0.5, 1.5, 2.5):
        study.enqueue_trial({"x": x})

    def objective(t):
        x = t.suggest_float("x", -5, 5)
        k = t.suggest_int("n", 1, 8)
        c = t.suggest_categorical("c", ["a", "b"])
        return x * x + k + (c == "b")
    rust = subprocess.Popen([bin_, "study", spec, "both", str(n), "7"])
    others = [subprocess.Popen([sys.executable, "-c", RUSTUNA_WORKER, spec, str(n)])] if rustuna else []
    study.optimize(objective, n_trials=n)
    if rust.wait() != 0:
        sys.exit(f"FAIL {what}: our worker failed")
    if any(p.wait() != 0 for p in others):
        sys.exit(f"FAIL {what}: the Rustuna worker failed")
    workers = 2 + len(others)
    trials = optuna.load_study(study_name="both", storage=storage).trials
    if len(trials) != workers * n:
        sys.exit(f"FAIL {what}: {len(trials)} trials, not {workers * n}")
    if [t.number for t in trials] != list(range(workers * n)):
        sys.exit(f"FAIL {what}: trial numbers {[t.number for t in trials]}")
    if any(t.state != optuna.trial.TrialState.COMPLETE for t in trials):
        sys.exit(f"FAIL {what}: not every trial complete")
    for t in trials:
        want = t.params["x"] ** 2 + t.params["n"] + (t.params["c"] == "b")
        if abs(t.value - want) > 1e-12:
            sys.exit(f"FAIL {what}: trial {t.number} has value {t.value}, its params give {want}")
    for x in (0.5, 1.5, 2.5):
        if sum(t.params["x"] == x for t in trials[:3]) != 1:
            sys.exit(f"FAIL {what}: the trial enqueued with x={x} was not evaluated exactly once")
    ours = json.loads(run(bin_, "dump", spec))
    theirs = [s for s in python_view(storage) if s["name"] == "both"]
    mine = [s for s in ours if s["name"] == "both"]
    for s_ in mine:
        for t in s_["trials"]:
            t["datetime_start"] = to_local_naive(t["datetime_start"])
            t["datetime_complete"] = to_local_naive(t["datetime_complete"])
    same(mine, theirs, what)
    names = "Optuna's, Rustuna's and ours" if others else "Optuna's worker and ours"
    print(f"ok  {what}: {names} ran {workers * n} trials of one study at once, "
          "each enqueued trial evaluated once, the same study in Optuna and ours")


def check_dashboard(bin_, d, screenshot=None):
    """optuna-dashboard serves a study our study loop wrote: its API returns our
    trials (values and parameters); optionally a screenshot by headless Chromium."""
    import socket
    import time
    import urllib.request
    path = os.path.join(d, "dashboard.log")
    run(bin_, "study", path, "tpe-demo", 25, 3)
    ours = json.loads(run(bin_, "dump", path))[0]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    exe = os.path.join(os.path.dirname(sys.executable), "optuna-dashboard")
    server = subprocess.Popen([exe, path, "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                studies = json.load(urllib.request.urlopen(f"{base}/api/studies", timeout=5))
                break
            except OSError:
                time.sleep(0.1)
        else:
            sys.exit("FAIL dashboard: optuna-dashboard did not answer")
        names = [s_["study_name"] for s_ in studies["study_summaries"]]
        if names != ["tpe-demo"]:
            sys.exit(f"FAIL dashboard: studies {names}")
        detail = json.load(urllib.request.urlopen(f"{base}/api/studies/0?after=0", timeout=30))
        got = [(t["number"], t["values"], {p["name"]: p["param_internal_value"] for p in t["params"]})
               for t in detail["trials"]]
        want = [(t["number"], t["values"], {k: (v if not isinstance(v, str) else ["a", "b"].index(v))
                                             for k, v in t["params"].items()}) for t in ours["trials"]]
        if got != want:
            sys.exit(f"FAIL dashboard: its trials differ from ours:\n  {got[:2]}\n  {want[:2]}")
        print(f"ok  optuna-dashboard {__import__('optuna_dashboard').__version__} serves our study: "
              f"{len(got)} trials, values and parameters as ours")
        if screenshot:
            subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                            "--window-size=1280,1000", "--virtual-time-budget=8000",
                            f"--screenshot={os.path.abspath(screenshot)}", f"{base}/dashboard/studies/0"],
                           check=True, capture_output=True)
            print(f"    screenshot: {screenshot}")
    finally:
        server.kill()
        server.wait()


def check_snapshot(bin_, d, path):
    """Ours writes a study alone to a new journal (what a finished shared
    `autoglm run` keeps beside its run): Optuna loads the same study from it."""
    snap = os.path.join(d, "snapshot.log")
    run(bin_, "snapshot", path, "both", snap)

    def view(p):
        [s] = [s for s in python_view(p) if s["name"] == "both"]
        s.pop("id")
        for t in s["trials"]:
            t.pop("id")
        return s
    want = view(path)
    same(view(snap), want, "snapshot")
    print(f"ok  snapshot: the study alone in a new journal, {len(want['trials'])} trials identical in Optuna")


def check_artifacts(bin_, d):
    """Artifacts both ways: ours uploads, Optuna lists and downloads; Optuna
    uploads, ours lists and downloads; the same bytes and metadata."""
    from optuna.artifacts import FileSystemArtifactStore, download_artifact, get_all_artifact_meta
    from optuna.artifacts import upload_artifact

    path = os.path.join(d, "artifacts.log")
    store_dir = os.path.join(d, "store")
    os.makedirs(store_dir)
    storage = JournalStorage(JournalFileBackend(path))
    study = optuna.create_study(study_name="artifacts", storage=storage)
    trial = study.ask()
    trial.suggest_float("x", 0, 1)
    ours_file = os.path.join(d, "config.json")
    with open(ours_file, "wb") as f:
        f.write(b'{"hidden": 64}\n' + bytes(range(256)))
    ours_id = run(bin_, "upload", path, "artifacts", trial.number, store_dir, ours_file).strip()
    store = FileSystemArtifactStore(store_dir)
    storage = JournalStorage(JournalFileBackend(path))
    frozen = storage.get_all_trials(study._study_id)[trial.number]
    metas = get_all_artifact_meta(frozen, storage=storage)
    if [(m.artifact_id, m.filename, m.mimetype, m.encoding) for m in metas] != [
            (ours_id, "config.json", "application/json", None)]:
        sys.exit(f"FAIL artifacts: Optuna lists {metas} for our upload {ours_id}")
    got = os.path.join(d, "got.bin")
    download_artifact(artifact_store=store, artifact_id=ours_id, file_path=got)
    if open(got, "rb").read() != open(ours_file, "rb").read():
        sys.exit("FAIL artifacts: Optuna downloads other bytes than ours uploaded")
    py_file = os.path.join(d, "weights.safetensors")
    with open(py_file, "wb") as f:
        f.write(os.urandom(4096))
    py_id = upload_artifact(artifact_store=store, file_path=py_file, study_or_trial=trial)
    out = os.path.join(d, "ours-got")
    os.makedirs(out)
    listed = json.loads(run(bin_, "artifacts", path, "artifacts", trial.number, store_dir, out))
    want = sorted([
        {"artifact_id": ours_id, "filename": "config.json", "mimetype": "application/json", "encoding": None},
        {"artifact_id": py_id, "filename": "weights.safetensors",
         "mimetype": "application/octet-stream", "encoding": None},
    ], key=lambda m: m["artifact_id"])
    if listed != want:
        sys.exit(f"FAIL artifacts: ours lists {listed}, want {want}")
    if open(os.path.join(out, py_id), "rb").read() != open(py_file, "rb").read():
        sys.exit("FAIL artifacts: ours downloads other bytes than Optuna uploaded")
    print("ok  artifacts: ours -> Optuna and Optuna -> ours (FileSystemArtifactStore), same bytes and metadata")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--asset", help="Optuna's compatibility journal (else fetched from PyPI)")
    ap.add_argument("--fetch-to", default="target/optuna-asset")
    ap.add_argument("--lines", type=int, default=10000)
    ap.add_argument("--dashboard", action="store_true", help="also through optuna-dashboard's API")
    ap.add_argument("--screenshot", help="with --dashboard: a headless Chromium screenshot here")
    ap.add_argument("--redis-lines", type=int, default=2000, help="concurrent appends through Redis")
    ap.add_argument("--redis", action="store_true",
                    help="also through Redis (a redis-server on PATH; the binary built with the redis feature)")
    a = ap.parse_args()
    check_asset(a.bin, a.asset or fetch_asset(a.fetch_to))
    with tempfile.TemporaryDirectory() as d:
        check_python_written(a.bin, d)
        check_ours_written(a.bin, d)
        check_concurrent(a.bin, d, a.lines)
        check_artifacts(a.bin, d)
        both = os.path.join(d, "both.log")
        try:
            import rustuna  # noqa: F401
            with_rustuna = True
        except ImportError:
            with_rustuna = False
            print("--  Rustuna is not installed: the shared study runs without its worker")
        check_shared_study(a.bin, JournalStorage(JournalFileBackend(both)), both,
                           "one study, several workers, a file", rustuna=with_rustuna)
        check_snapshot(a.bin, d, both)
        if a.redis:
            check_redis(a.bin, d, a.redis_lines)
        if a.dashboard:
            check_dashboard(a.bin, d, a.screenshot)


if __name__ == "__main__":
    main()
