"""A simulated trial with psychological outcomes, a dose and a known mediated effect (tests and calibration).

Participant-level truth, in the change-score parametrisation ``ctra.mediation`` estimates: for participant i
in arm T_i (0 control, 1 active) with person effects u_i (score) and v_i (outcome),

    outcome(pre)  = v_i + e,     outcome(post) = v_i + a T_i + dose effect + e'
    score(pre)    = u_i + e,     score(post)   = u_i + direct T_i + b (outcome(post) - outcome(pre)) + e'

so the change in the outcome carries ``a x b`` of the arm's effect on the score change (the indirect effect),
``direct`` the rest. ``dose`` (acts completed) is drawn per active participant and adds ``dose_slope x (dose -
mean)`` to the active participants' score change. Every participant has a pre and a post draw; ``missing``
blanks that fraction of post outcomes (a questionnaire not returned).
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def simulate_trial(
    n_per_arm: int = 100,
    a: float = 0.8,
    b: float = 0.5,
    direct: float = 0.2,
    dose_slope: float = 0.0,
    arms: tuple[str, ...] = ("control", "kind"),
    person_sd: float = 1.0,
    noise_sd: float = 0.5,
    missing: float = 0.0,
    seed: int = 1,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(obs indexed by sample: participant, arm, time, age, wellbeing, acts; scores indexed by sample: ctra)."""
    rng = np.random.default_rng(seed)
    rows = []
    for k, arm in enumerate(arms):
        active = float(k > 0)
        for i in range(n_per_arm):
            person = f"{arm}_{i:03d}"
            age = rng.normal(50, 10)
            u, v = rng.normal(0, person_sd, 2)
            acts = float(rng.integers(0, 21)) if active else np.nan
            dose_term = dose_slope * (acts - 10.0) if active else 0.0
            m_pre, m_post = v + rng.normal(0, noise_sd), v + a * active + rng.normal(0, noise_sd)
            s_pre = u + rng.normal(0, noise_sd)
            s_post = u + direct * active + b * (m_post - m_pre) + dose_term + rng.normal(0, noise_sd)
            if missing and rng.random() < missing:
                m_post = np.nan
            for time, s, m in (("pre", s_pre, m_pre), ("post", s_post, m_post)):
                rows.append((f"{person}_{time}", person, arm, time, age, m, acts, s))
    frame = pd.DataFrame(rows, columns=["sample", "participant", "arm", "time", "age", "wellbeing", "acts", "ctra"])
    frame = frame.set_index("sample")
    frame.index.name = None
    return frame.drop(columns=["ctra"]), frame[["ctra"]]
