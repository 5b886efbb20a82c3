"""What the Kafka client smoke scripts share: free loopback ports and stopping what they start."""

import shutil
import socket
import subprocess


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def stop(proc, signal_number, work):
    """Stops `proc` with `signal_number` (killed after 60 s) and removes the `work` directory."""
    proc.send_signal(signal_number)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    shutil.rmtree(work, ignore_errors=True)


def start_dev(silt, work, brokers, secure=False):
    """Starts `silt dev` with `brokers` brokers and Kafka listeners, data under `work`; returns
    (process, gRPC bootstrap, Kafka bootstrap) once it printed how to connect (at most 120 s).
    Its stderr (the brokers' logs) goes to `work`/dev.log. The ports are picked at random from
    free ones, but `silt dev` also takes the ports after them (PORT+10, +20, ...), which may be
    in use: a `silt dev` that exits before it is up is started again on other ports (3 tries)."""
    import os
    import threading
    import time
    for attempt in range(3):
        args = [silt, "dev", "--brokers", str(brokers), "--base-port", str(free_port()),
                "--kafka-base-port", str(free_port()), "--data-dir", work]
        if secure:
            args.append("--secure")
        log = open(f"{work}/dev.log", "w")
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, text=True)
        found = {}
        ready = threading.Event()

        def read(proc=proc, found=found, ready=ready):
            for line in proc.stdout:
                if line.startswith("bootstrap: "):
                    found["bootstrap"] = line.split()[1]
                elif line.startswith("kafka: "):
                    found["kafka"] = line.split()[1]
                elif line.startswith("try:"):
                    ready.set()
        threading.Thread(target=read, daemon=True).start()
        end = time.monotonic() + 120
        while not ready.wait(0.5) and proc.poll() is None and time.monotonic() < end:
            pass
        if ready.is_set() and "kafka" in found:
            return proc, found["bootstrap"], found["kafka"]
        exited = proc.poll() is not None
        with open(f"{work}/dev.log") as f:
            tail = "".join(f.readlines()[-20:])
        print(f"silt dev did not come up (attempt {attempt + 1}, "
              f"{'exited' if exited else 'timed out'}): {found}\n{tail}")
        proc.send_signal(2)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if not exited:
            break
        shutil.rmtree(work, ignore_errors=True)
        os.makedirs(work, exist_ok=True)
    shutil.rmtree(work, ignore_errors=True)
    raise SystemExit("silt dev did not come up")
