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
    Its stderr (the brokers' logs) goes to `work`/dev.log."""
    import threading
    args = [silt, "dev", "--brokers", str(brokers), "--base-port", str(free_port()),
            "--kafka-base-port", str(free_port()), "--data-dir", work]
    if secure:
        args.append("--secure")
    log = open(f"{work}/dev.log", "w")
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, text=True)
    found = {}
    ready = threading.Event()

    def read():
        for line in proc.stdout:
            if line.startswith("bootstrap: "):
                found["bootstrap"] = line.split()[1]
            elif line.startswith("kafka: "):
                found["kafka"] = line.split()[1]
            elif line.startswith("try:"):
                ready.set()
    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(120) or "kafka" not in found:
        stop(proc, 2, work)
        raise SystemExit(f"silt dev did not come up: {found}")
    return proc, found["bootstrap"], found["kafka"]
