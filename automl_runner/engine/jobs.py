"""The Ray Jobs API, for experiments submitted to a cluster as Ray jobs."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ComputeError


@dataclass(frozen=True)
class JobState:
    """A Ray job as its API reports it."""

    status: str
    ended: bool
    message: str


def check_jobs_api(address: str) -> None:
    """Raise ComputeError at once if nothing listens at the Jobs API `address`
    (http://HEAD:8265): a submission is refused before its run is created."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(address if "://" in address else f"http://{address}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname or "", port), timeout=10).close()
    except OSError as ex:
        raise ComputeError(
            f"cannot submit a Ray job to {address}: nothing answers there "
            f"({ex.strerror or ex}); pass the head's dashboard address, http://HEAD:8265"
        ) from ex


def submit_job(address: str, entrypoint: str, metadata: dict[str, str]) -> str:
    """Submit `entrypoint` as a Ray job at the Jobs API `address`; its job id."""
    from ray.job_submission import JobSubmissionClient

    return str(
        JobSubmissionClient(address).submit_job(
            entrypoint=entrypoint,
            # the driver only waits and writes to MLflow: it must not take an iteration's CPU
            entrypoint_num_cpus=0,
            metadata=metadata,
        )
    )


def job_state(address: str, job_id: str) -> JobState:
    from ray.job_submission import JobSubmissionClient

    info = JobSubmissionClient(address).get_job_info(job_id)
    return JobState(str(info.status), bool(info.status.is_terminal()), info.message or "")


def job_logs(address: str, job_id: str) -> str:
    """The job's output (its driver's console)."""
    from ray.job_submission import JobSubmissionClient

    return str(JobSubmissionClient(address).get_job_logs(job_id))
