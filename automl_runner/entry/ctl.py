"""`automl-ctl`: submit an experiment to a Ray cluster and steer it from anywhere.

    automl-ctl submit [--address http://HEAD:8265] OVERRIDE...   # returns at once
    automl-ctl status RUN_ID                                       # from any process/machine
    automl-ctl cancel RUN_ID ITERATION
    automl-ctl stop RUN_ID
    automl-ctl wait RUN_ID
    automl-ctl logs RUN_ID
    automl-ctl replay JOURNAL_DIR                                  # after a tracking outage
    automl-ctl cluster up|status|down compute=cluster OVERRIDE...  # a cluster that outlives runs

Everything but `submit` and `logs` needs only the MLflow store (``--tracking-uri``,
default MLFLOW_TRACKING_URI or ./outputs/mlflow). Resuming is the ordinary command (or a
submit) with ``automl.resume=RUN_ID``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ..errors import UserError

PROG = "automl-ctl"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Submit automl-runner experiments to Ray and steer them."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("submit", help="submit an experiment as a Ray job; prints its run id")
    p.add_argument(
        "--address",
        help="the Ray Jobs API, http://HEAD:8265 (default: RAY_API_SERVER_ADDRESS, else the "
        "head of compute.address on port 8265)",
    )
    p.add_argument("--wait", action="store_true", help="then wait until it ends")
    p.add_argument("overrides", nargs="*", help="the same overrides as automl-runner takes")

    def with_run(name: str, text: str) -> argparse.ArgumentParser:
        q = sub.add_parser(name, help=text)
        q.add_argument("run_id", help="the experiment's MLflow parent run id")
        q.add_argument(
            "--tracking-uri",
            help="the MLflow store (default: MLFLOW_TRACKING_URI, else ./outputs/mlflow)",
        )
        return q

    q = with_run("status", "state, iterations, best so far, time against budget")
    q.add_argument("--json", action="store_true", help="print the status as JSON")
    q = with_run("cancel", "cancel one running iteration; the experiment goes on")
    q.add_argument("iteration", type=int)
    q.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the answer")
    q = with_run("stop", "no new iterations, cancel running ones, then refit and log the best")
    q.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the answer")
    q = with_run("wait", "wait until the experiment ends; exit 0 if it FINISHED")
    q.add_argument("--timeout", type=float, default=None, help="give up after this many seconds")
    with_run("logs", "the Ray job's output (the driver's console)")
    q = sub.add_parser(
        "replay", help="write a run's tracking journal (left by a tracking-server outage) to MLflow"
    )
    q.add_argument("journal", help="the journal folder the run named (…/tracking-journal)")
    q.add_argument("--tracking-uri", help="the MLflow store (default: the one the run used)")
    q = sub.add_parser(
        "cluster",
        help="bring a compute=cluster cluster up (it stays up), show it, or tear it down",
    )
    q.add_argument("action", choices=("up", "status", "down"))
    q.add_argument(
        "overrides", nargs="*", help="compute=cluster and its keys, as automl-runner takes them"
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    """Console entry point; mistakes print one line and exit 2."""
    args = _parser().parse_args(argv)
    try:
        sys.exit(_run(args))
    except KeyboardInterrupt:
        # Ctrl-C on wait or status ends this command, not the experiment (that is `stop`)
        sys.stderr.write(f"{PROG}: interrupted\n")
        sys.exit(130)
    except UserError as ex:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        sys.stderr.write(f"{PROG}: error: {ex}\n")
        sys.exit(2)
    except ConnectionError as ex:
        # the tracking server does not answer: try again later (sysexits' EX_TEMPFAIL)
        sys.stderr.write(f"{PROG}: error: {ex}\n")
        sys.exit(75)


def _run(args: argparse.Namespace) -> int:
    from .remote import attach, submit

    if args.command == "replay":
        from ..tracking.journal import replay_journal

        written, uri = replay_journal(Path(args.journal), args.tracking_uri)
        print(f"replayed {written} journaled write(s) into {uri}")
        return 0
    if args.command == "cluster":
        from .clusters import cluster_command

        return cluster_command(args.action, args.overrides)
    if args.command == "submit":
        handle = submit(args.overrides, address=args.address)
        uri = handle.tracking_uri
        print(f"{'job:':<17}{handle.job_id} ({handle.address})")
        print(f"{'MLflow run:':<17}{handle.run_id} (parent)")
        print(f"{'MLflow store:':<17}{uri}")
        print(f"{'status:':<17}{PROG} status {handle.run_id} --tracking-uri {uri}")
        print(f"{'cancel / stop:':<17}{PROG} cancel|stop {handle.run_id} [N] --tracking-uri {uri}")
        sys.stdout.flush()
        if not args.wait:
            return 0
        final = handle.wait()
        print(final)
        return 0 if final.state == "FINISHED" else 1
    handle = attach(args.run_id, args.tracking_uri)
    if args.command == "status":
        st = handle.status()
        print(json.dumps(st.as_dict(), indent=2) if args.json else st)
        return 0
    if args.command == "cancel":
        answer = handle.cancel_iteration(args.iteration, timeout=args.timeout)
        print(f"cancel iteration {args.iteration}: {answer}")
        return 0 if not answer.startswith("ignored") else 1
    if args.command == "stop":
        print(f"stop: {handle.stop(timeout=args.timeout)}")
        return 0
    if args.command == "wait":
        try:
            final = handle.wait(timeout=args.timeout)
        except TimeoutError as ex:
            print(f"{PROG}: {ex}", file=sys.stderr)
            return 1
        print(final)
        return 0 if final.state == "FINISHED" else 1
    if args.command == "logs":
        print(handle.logs(), end="")
        return 0
    raise AssertionError(args.command)


if __name__ == "__main__":
    main()
