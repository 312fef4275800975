"""The study runner that ``geodistill tune`` and ``geodistill ablate`` share: one command's run of an Optuna
study in its study folder (held against a second command, claimed for one study, logged to tune.log), its
trials run by one worker in this process or by worker processes spawned on this machine."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterator

import optuna

from geodistill.config import Config
from geodistill.errors import GeodistillError
from geodistill.outdir import output_dir
from geodistill.runlock import hold
from geodistill.tune.outputs import write_atomic
from geodistill.tune.storage import HEARTBEAT_S, STORAGE_FILE, mask_url, open_study, storage_url
from geodistill.tune.workers import StudyPlan, run_worker, spawn_workers, study_log

CLAIM_FILE = "study.json"


class StudyRunner:
    """One command's run of the study ``study_name`` on ``storage`` in the study folder ``cfg.run_dir``.

    storage: the Optuna RDB URL as the user gave it, None for a SQLite file in the study folder (see
    ``storage_url``); given, other commands (machines) may run trials of the same study. command: the
    subcommand ("tune", "ablate"), named in errors and in the folder's lock record.

    Creating it creates the folder (a one-line error when it cannot be) and settles the study's name
    (default: the folder's name), its masked storage label and the shared teacher cache (default
    ``<folder>/teacher_cache``). The run itself::

        runner = StudyRunner(cfg, storage, name, command="tune", workers=2)
        with runner.session():               # folder held; another study's folder refused
            study = runner.open(n_trials)    # an unreachable storage: one error, before any worker
            runner.claim()                   # from now on the folder is this study's
            runner.run(n_trials, plan=...)   # here, or in `workers` spawned processes
            runner.load()                    # the study as the workers left it

    The real URL stays in memory (``url``) and reaches spawned workers through their spawn pipe: no file
    holds it; the folder's files and log show ``label``, the URL with its password masked.
    """

    def __init__(
        self,
        cfg: Config,
        storage: str | None,
        study_name: str | None,
        *,
        command: str,
        workers: int = 1,
        heartbeat_s: int = HEARTBEAT_S,
    ) -> None:
        self.study_dir = output_dir(cfg.run_dir, command)
        self.command = command
        self.url = storage_url(cfg, storage)  # the real URL: in memory and handed to workers, never written
        self.name = study_name or self.study_dir.resolve().name
        self.label = mask_url(self.url)  # what is shown and written instead
        self.shared = storage is not None
        # The folder's claim (study.json): the study's name and its storage, masked (the SQLite file's name
        # for the default storage, so the folder can move).
        self.record = {"study": self.name, "storage": self.label if storage else STORAGE_FILE}
        self.workers = workers
        self.heartbeat_s = heartbeat_s
        if not cfg.teacher_cache:
            cfg = dataclasses.replace(cfg, teacher_cache=str((self.study_dir / "teacher_cache").resolve()))
        self.cfg = cfg

    @contextlib.contextmanager
    def session(self) -> Iterator[StudyRunner]:
        """Hold the study folder (one command at a time), log to its tune.log and refuse a folder that
        holds another study, for as long as the block runs; yields the runner."""
        with hold(self.study_dir, f"geodistill {self.command}"), study_log(self.study_dir):
            self.check_claim()  # another study's folder: refused before the storage is touched
            yield self

    def check_claim(self) -> bool:
        """True when the folder is already this study's, False when unclaimed; raises GeodistillError
        when it holds another study."""
        path = self.study_dir / CLAIM_FILE
        if not path.is_file():
            return False
        try:
            theirs = json.loads(path.read_text())
        except ValueError:
            theirs = {}
        record = self.record
        if theirs != record:
            raise GeodistillError(
                f"{self.study_dir}: holds study {theirs.get('study')!r} on {theirs.get('storage')}, "
                f"not {record['study']!r} on {record['storage']}; use another run_dir"
            )
        return True

    def claim(self) -> None:
        """Claim the folder for this study, so trial folders of two studies never mix. Call it once the
        storage has opened, so a mistyped URL never claims the folder for a study that does not exist."""
        if not self.check_claim():
            write_atomic(self.study_dir / CLAIM_FILE, (json.dumps(self.record, indent=2) + "\n").encode())

    def open(self, n_trials: int) -> optuna.Study:
        """Create or load the study with a budget of ``n_trials`` (``open_study``)."""
        return open_study(self.cfg, self.url, self.name, n_trials, self.heartbeat_s)

    def run(self, n_trials: int, timeout: float | None = None, plan: StudyPlan | None = None) -> None:
        """Run the study's trials until ``n_trials`` are spent (or ``timeout`` s per worker pass): in this
        process with one worker, else in ``workers`` spawned processes. plan: what the trials are
        (default ``tpe_plan``); a module-level function, so spawned workers get it."""
        args = (self.cfg, self.url, self.name, n_trials, timeout, self.heartbeat_s)
        if self.workers == 1:
            run_worker(*args, shared=self.shared, plan=plan)
        else:
            spawn_workers(*args, self.workers, plan=plan)

    def load(self) -> optuna.Study:
        """The study as it stands in the storage (after every worker)."""
        return optuna.load_study(study_name=self.name, storage=self.url)
