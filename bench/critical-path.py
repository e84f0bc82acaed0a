#!/usr/bin/env python3
"""The critical path of a run from bench/delay-proxy.py's trace: every request in
order of its start, with start and end relative to the first, and its depth, the
number of requests in the longest chain of requests each started after the previous
one ended (round trips in sequence). Then the longest chain itself.

usage: critical-path.py TRACE_FILE [FROM_EPOCH_SECONDS [TO_EPOCH_SECONDS]]
"""
import heapq
import sys


def main():
    lo = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
    hi = float(sys.argv[3]) if len(sys.argv) > 3 else float("inf")
    requests = []
    with open(sys.argv[1]) as trace:
        for line in trace:
            start, end, method, path = line.split(" ", 3)
            start, end = float(start), float(end)
            if lo <= start <= hi:
                requests.append((start, end, method, path.strip()))
    if not requests:
        print("no requests traced")
        return
    requests.sort()
    t0 = requests[0][0]
    # In order of start, the requests seen so far wait in a heap by their end; those
    # that ended by this one's start leave it into the running deepest chain: a first
    # publish's 10,000 requests take O(n log n), not 10^8 comparisons.
    depth, before = [], []
    unended, best, via = [], 0, None
    for i, (start, end, _m, _p) in enumerate(requests):
        while unended and unended[0][0] <= start:
            _, j = heapq.heappop(unended)
            if depth[j] > best:
                best, via = depth[j], j
        depth.append(best + 1)
        before.append(via)
        heapq.heappush(unended, (end, i))
    print(f"{'start ms':>9} {'end ms':>8} depth  request")
    for (start, end, method, path), d in zip(requests, depth):
        print(f"{(start - t0) * 1000:9.0f} {(end - t0) * 1000:8.0f} {d:5}  {method} {path}")
    last = max(range(len(requests)), key=lambda i: (depth[i], -requests[i][1]))
    chain = []
    while last is not None:
        chain.append(last)
        last = before[last]
    print(f"\n{len(requests)} requests, {max(depth)} in sequence (the critical path):")
    for i in reversed(chain):
        start, end, method, path = requests[i]
        print(f"  {(start - t0) * 1000:6.0f}-{(end - t0) * 1000:6.0f} ms  {method} {path}")


if __name__ == "__main__":
    main()
