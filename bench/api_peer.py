"""The peer for bench/api.sh: the official Kubernetes Python client (pip `kubernetes`) running
the same closed-loop ConfigMap lifecycle as `scaletest api churn -w W -u 1`: create, one merge
patch, delete. Prints one line: calls, seconds, CPU seconds (user + system, all threads).

    python3 bench/api_peer.py KUBECONFIG WORKERS SECONDS
"""
import resource
import sys
import threading
import time

from kubernetes import client, config


def main():
    kubeconfig, workers, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    config.load_kube_config(config_file=kubeconfig)
    api = client.CoreV1Api()
    deadline = time.monotonic() + seconds
    counts = [0] * workers

    def loop(w):
        i = 0
        while time.monotonic() < deadline:
            name = f"peer-{w}-{i}"
            i += 1
            body = {"metadata": {"name": name, "labels": {"scaletest.dev/run": "peer"}},
                    "data": {"payload": "x" * 100}}
            api.create_namespaced_config_map("default", body)
            api.patch_namespaced_config_map(
                name, "default", {"metadata": {"annotations": {"op": "update-1"}}})
            api.delete_namespaced_config_map(name, "default")
            counts[w] += 3

    start = time.monotonic()
    threads = [threading.Thread(target=loop, args=(w,)) for w in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    ru = resource.getrusage(resource.RUSAGE_SELF)
    print(f"{sum(counts)} {elapsed:.3f} {ru.ru_utime + ru.ru_stime:.3f}")


if __name__ == "__main__":
    main()
