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
