"""Peak resident memory of this process, in MB.

From /proc/self/status (VmHWM), not getrusage: on Linux ru_maxrss survives fork + exec, so a child
started by a big parent would report the parent's peak instead of its own.
"""


def peak_rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")
