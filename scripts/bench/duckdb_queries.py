"""Times SQL queries in DuckDB over Appizer's Parquet files, for `appizer-bench analytics`.

Reads one JSON object on stdin: {"files": "<glob>", "runs": N, "threads": T,
"queries": {"name": "SQL over the view `ev`", ...}} and prints one JSON object:
{"name": {"ms": [each timed run], "rows": [[...], ...]}, "peak_rss_bytes": ...}.
Each query runs once untimed (to warm the file cache), then N timed runs.
"""

import json
import resource
import sys
import time

import duckdb


def main() -> None:
    job = json.load(sys.stdin)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"SET threads = {int(job['threads'])}")
    files = job["files"].replace("'", "''")
    con.execute(
        f"CREATE VIEW ev AS SELECT * FROM read_parquet('{files}', hive_partitioning = 1)"
    )
    out = {}
    for name, sql in job["queries"].items():
        rows = con.execute(sql).fetchall()
        times = []
        for _ in range(int(job["runs"])):
            start = time.perf_counter()
            rows = con.execute(sql).fetchall()
            times.append((time.perf_counter() - start) * 1000.0)
        out[name] = {"ms": times, "rows": [[str(v) for v in r] for r in rows]}
    out["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
