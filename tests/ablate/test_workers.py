"""Two worker processes share one ablation on a PostgreSQL server: every cell runs exactly once."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from geodistill.ablate import ablate
from tests.tune.conftest import postgres_url  # noqa: F401  (fixture)


@pytest.mark.slow
@pytest.mark.postgres
def test_two_workers_split_the_grid_on_postgres(ablate_cfg, postgres_url, monkeypatch):  # noqa: F811
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    cfg = ablate_cfg("shared-grid", ablate={"run": ["ce", "ce+kl"], "seeds": 2})
    summary = ablate(cfg, storage=postgres_url, study_name="ablation-pg", workers=2)

    trials = optuna.load_study(study_name="ablation-pg", storage=postgres_url).trials
    assert {t.state for t in trials} == {TrialState.COMPLETE}
    cells = sorted((t.params["variant"], t.params["seed"]) for t in trials)
    assert cells == [("ce", 3), ("ce", 4), ("ce+kl", 3), ("ce+kl", 4)]  # each cell once, none twice
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both processes ran cells
    assert summary["cells"] == {"total": 4, "complete": 4} and ":***@" in summary["storage"]
