"""Load and soak: start the app on loopback and drive /translate with gradio_client clients.

Scenarios (each bounded by its request count and by --max-seconds):
  clients  N clients x M requests each, in parallel (default 8 x 50): expect no errors.
  burst    C clients at once, one request each (default 40, past the queue of 32): the ones beyond
           the queue must get a clear "busy, try again" message, the rest a result.
  soak     R requests in a row from one client (default 500): the server's memory (RSS) after them
           against after warm-up, sampled as it goes, to see whether it plateaus.

Reports requests, errors (by message), throughput, p50/p95 latency and the server's RSS. The server
is `python app.py` in a subprocess (so its memory is its own), on 127.0.0.1 only. CPU heavy: run it
niced on a shared machine, and note the load average it prints.

    nice -n 10 python -m benchmarks.load [--scenario clients burst soak] [--clients 8 --requests 50]
        [--burst 40] [--soak 500] [--max-seconds 900] [--out benchmarks/out/load.json]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"  # loopback only


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


class Server:
    """`python app.py` on a free loopback port, with its caches in a temporary folder."""

    def __init__(self, tmp: Path, threads: int, extra_args: list[str]):
        self.port = free_port()
        env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1",
                   GRADIO_EXAMPLES_CACHE=str(tmp / "examples"), GRADIO_TEMP_DIR=str(tmp / "gradio"),
                   TWINGAN_CACHE=str(tmp / "cache"), OMP_NUM_THREADS=str(threads))
        self.log = open(tmp / "server.log", "w")
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--host", HOST, "--port", str(self.port),
                                      *extra_args], env=env, stdout=self.log, stderr=subprocess.STDOUT, cwd=tmp)
        self.url = f"http://{HOST}:{self.port}/"
        deadline = time.time() + 180
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the app exited with {self.proc.returncode}; see {tmp / 'server.log'}")
            try:
                urllib.request.urlopen(self.url, timeout=2)
                return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError("the app did not answer within 180 s")

    def rss(self) -> float:
        return rss_mb(self.proc.pid)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def request(client, photo: Path, paste: bool) -> tuple[float, str | None]:
    """One /translate call: (seconds, None) or (seconds, the error message the client got)."""
    from gradio_client import handle_file

    start = time.perf_counter()
    try:
        gallery, _, _ = client.predict(handle_file(str(photo)), paste=paste, api_name="/translate")
        error = None if len(gallery) >= 2 else f"unexpected result: {len(gallery)} gallery items"
    except Exception as err:  # noqa: BLE001 - a load test counts every failure, by message
        error = f"{type(err).__name__}: {err}"
    return time.perf_counter() - start, error


def summary(name: str, results: list[tuple[float, str | None]], wall: float, rss: dict) -> dict:
    ok = sorted(t for t, e in results if e is None)
    errors = collections.Counter(e for _, e in results if e is not None)
    pct = lambda q: ok[min(len(ok) - 1, round(q * (len(ok) - 1)))] * 1000 if ok else None  # noqa: E731
    out = {"scenario": name, "requests": len(results), "ok": len(ok), "errors": dict(errors),
           "wall_s": wall, "throughput_per_s": len(ok) / wall if wall else None,
           "p50_ms": pct(0.5), "p95_ms": pct(0.95), "rss_mb": rss, "load_average": os.getloadavg()[0]}
    p50, p95 = (f"{v:.0f}" if v is not None else "-" for v in (out["p50_ms"], out["p95_ms"]))
    print(f"{name}: {len(results)} requests, {len(ok)} ok, {sum(errors.values())} errors; "
          f"{out['throughput_per_s'] or 0:.2f} req/s; p50 {p50} ms, p95 {p95} ms; "
          f"server RSS {', '.join(f'{k} {v:.0f} MB' for k, v in rss.items())}; load average {out['load_average']:.1f}")
    for message, n in errors.items():
        print(f"  {n} x {message}")
    return out


def clients(server: Server, photo: Path, n_clients: int, n_requests: int, paste: bool, deadline: float) -> dict:
    from gradio_client import Client

    results, lock = [], threading.Lock()
    before = server.rss()

    def worker():
        client = Client(server.url, verbose=False)
        for _ in range(n_requests):
            if time.time() > deadline:
                return
            r = request(client, photo, paste)
            with lock:
                results.append(r)

    start = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return summary(f"clients {n_clients}x{n_requests}", results, time.perf_counter() - start,
                   {"before": before, "after": server.rss()})


def burst(server: Server, photo: Path, n_clients: int, paste: bool) -> dict:
    from gradio_client import Client

    made = [Client(server.url, verbose=False) for _ in range(n_clients)]  # connect first, then fire together
    barrier = threading.Barrier(n_clients)
    results = [None] * n_clients

    def worker(i):
        barrier.wait()
        results[i] = request(made[i], photo, paste)

    start = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return summary(f"burst {n_clients} at once", results, time.perf_counter() - start, {"after": server.rss()})


def soak(server: Server, photo: Path, n_requests: int, paste: bool, deadline: float, every: int = 50) -> dict:
    from gradio_client import Client

    client = Client(server.url, verbose=False)
    for _ in range(10):  # warm-up: detector built, allocator pools filled
        request(client, photo, paste)
    samples = [(0, server.rss())]
    results = []
    start = time.perf_counter()
    for i in range(1, n_requests + 1):
        if time.time() > deadline:
            break
        results.append(request(client, photo, paste))
        if i % every == 0:
            samples.append((i, server.rss()))
            print(f"  soak: {i} requests, server RSS {samples[-1][1]:.0f} MB", flush=True)
    out = summary(f"soak {len(results)} in a row", results, time.perf_counter() - start,
                  {"after warm-up": samples[0][1], "after": server.rss()})
    out["rss_samples"] = samples
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenario", nargs="+", choices=["clients", "burst", "soak"], default=["clients", "burst", "soak"])
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--requests", type=int, default=50, help="per client, in the clients scenario")
    p.add_argument("--burst", type=int, default=40)
    p.add_argument("--soak", type=int, default=500)
    p.add_argument("--max-seconds", type=float, default=900, help="per scenario: no new requests after this")
    p.add_argument("--paste", action="store_true", help="ask for the pasted photo too")
    p.add_argument("--size", type=int, default=512, help="the selfie's side in px (a JPEG)")
    p.add_argument("--threads", type=int, default=1, help="the server's torch threads")
    p.add_argument("--out", type=Path, default=None, help="also write the results as JSON")
    p.add_argument("app_args", nargs="*", help="passed to app.py (after --)")
    args = p.parse_args(argv)

    from benchmarks.app_latency import selfie_jpeg

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        photo = tmp / "selfie.jpg"
        photo.write_bytes(selfie_jpeg(args.size))
        server = Server(tmp, args.threads, args.app_args)
        print(f"app on {server.url} (pid {server.proc.pid}), {args.size} px JPEG selfie, paste {args.paste}, "
              f"server RSS {server.rss():.0f} MB at start; load average {os.getloadavg()[0]:.1f} "
              f"on {os.cpu_count()} cores", flush=True)
        reports = []
        try:
            for name in args.scenario:
                deadline = time.time() + args.max_seconds
                if name == "clients":
                    reports.append(clients(server, photo, args.clients, args.requests, args.paste, deadline))
                elif name == "burst":
                    reports.append(burst(server, photo, args.burst, args.paste))
                else:
                    reports.append(soak(server, photo, args.soak, args.paste, deadline))
                sys.stdout.flush()
        finally:
            server.stop()
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(reports, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
