"""Constants of Birdie's reward-driven mixture controller (spec §6.3–§6.7), all configurable."""

import dataclasses

from birdie_jax.errors import ConfigError


@dataclasses.dataclass(frozen=True, slots=True)
class ControllerConfig:
    """Birdie controller settings; the defaults are the paper's (spec §6.4–§6.7), except the
    critic's size, which by default is scaled from the run (:mod:`birdie_jax.controller.sizing`).

    The config is hashable: it is a static argument of the jitted update, so two
    controllers with equal configs (and the same number of arms) share one compilation.

    Attributes:
      critic_width: hidden width of the critic (Linear 2n→width, Gated SSM blocks); None
        (the default): sized to the run (the paper's 256 for a 32,000-step run, smaller for
        shorter ones; see :func:`~birdie_jax.controller.sizing.sized_to_run`).
      critic_state: Gated SSM state width N of each critic block; None: 2 × critic_width
        (the paper's 512 at width 256).
      critic_layers: number of causal pre-norm residual Gated SSM blocks.
      critic_steps: AdamW iterations of critic training per update (one ``lax.fori_loop``);
        None: sized to the run (the paper's 200 for a 32,000-step run).
      learning_rate: AdamW learning rate (the peak when ``cyclic_lr``).
      weight_decay: AdamW decoupled weight decay (not applied to norms, biases, forget gates).
      grad_clip: global-norm gradient clipping threshold.
      input_norm_init: initial scale of the two input RMSNorms (loss half, action half).
      cyclic_lr: optional triangular cyclic learning rate between ``cyclic_lr_min`` and
        ``learning_rate`` with a half-period of ``cyclic_half_period`` critic steps (off by
        default; the spec lists it as optional).
      cyclic_lr_min, cyclic_half_period: see ``cyclic_lr``.
      input_noise: multiplicative input noise ×U(1−ε, 1+ε) on the critic's inputs during
        training (0 disables, the default; the spec's optional value is 0.02).
      num_candidates: K candidate actions per update; None (the default): sized to the run
        (the paper's 2048 for a 32,000-step run, at least 256). A multiple of 1 + len(pareto_shapes):
        K/4 uniform-normalised and K/4 per Pareto shape by default.
      pareto_shapes: Pareto shape α of each Pareto candidate group.
      top_k: the action is the renormalised mean of the best ``top_k`` candidates.
      history_capacity: H_max, the static length of the padded history buffers. At most
        H_max − 1 rows are kept (one slot is needed to score candidates); beyond that
        the oldest rows are dropped (a sliding window). None (the default): the run's
        number of evaluations + 1, rounded up to a multiple of 8 (40 for N = 32,000 or a
        scaled short run) — every row fits, and the critic, whose cost grows with H_max,
        never trains on more padding than it must. Fixed per run, so it compiles once.
      explore_fractions: (f1, f2, f3): exploration probability is ``explore_full`` for
        step < f1·N, ``explore_half`` for step < f2·N, a cosine from ``explore_half`` down
        to ``explore_floor`` until f3·N, then ``explore_floor``.
      explore_full, explore_half, explore_floor: see ``explore_fractions``.
      explore_delta: δ, the total weight of an unpicked class in an exploration action.
      explore_max_classes: an exploration action picks k ∈ {1..this} classes uniformly.
      warmup_steps: before this step the action is uniform over classes, then uniform
        within a class, and no critic update runs.
      evaluation_steps: the first evaluation steps of the schedule.
      evaluation_every: then an evaluation every this many steps.
      reference_steps: the run length the step constants were written for (the paper's).
      scale_short_runs: for runs shorter than ``reference_steps``, scale ``warmup_steps``,
        ``evaluation_steps`` and ``evaluation_every`` by N / reference_steps (round half
        up, at least 1, duplicates removed).
    """

    critic_width: int | None = None
    critic_state: int | None = None
    critic_layers: int = 4
    critic_steps: int | None = None
    learning_rate: float = 5e-4
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    input_norm_init: float = 0.1
    cyclic_lr: bool = False
    cyclic_lr_min: float = 5e-7
    cyclic_half_period: int = 100
    input_noise: float = 0.0
    num_candidates: int | None = None
    pareto_shapes: tuple[float, ...] = (3.0, 2.0, 1.0)
    top_k: int = 8
    history_capacity: int | None = None
    explore_fractions: tuple[float, float, float] = (0.05, 0.1, 0.5)
    explore_full: float = 1.0
    explore_half: float = 0.5
    explore_floor: float = 0.2
    explore_delta: float = 0.01
    explore_max_classes: int = 2
    warmup_steps: int = 250
    evaluation_steps: tuple[int, ...] = (10, 50, 250, 500, 1000, 1500, 2000)
    evaluation_every: int = 1000
    reference_steps: int = 32_000
    scale_short_runs: bool = True

    def __post_init__(self):
        # Lists (from YAML) become tuples so the config stays hashable (a jit static argument).
        for name in ("pareto_shapes", "explore_fractions", "evaluation_steps"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if len(self.explore_fractions) != 3:
            raise ConfigError(f"controller.explore_fractions needs 3 values, got {self.explore_fractions}")
        for name in ("critic_width", "critic_state", "critic_layers", "critic_steps", "num_candidates", "top_k",
                     "cyclic_half_period", "evaluation_every", "reference_steps", "explore_max_classes"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ConfigError(f"controller.{name} must be > 0, got {getattr(self, name)}")
        if self.history_capacity is not None and self.history_capacity < 3:
            raise ConfigError(f"controller.history_capacity must be >= 3, got {self.history_capacity}")
        if self.learning_rate <= 0 or self.cyclic_lr_min <= 0:
            raise ConfigError("controller.learning_rate and controller.cyclic_lr_min must be > 0")
        if self.weight_decay < 0 or self.grad_clip <= 0:
            raise ConfigError("controller.weight_decay must be >= 0 and controller.grad_clip > 0")
        if not 0.0 <= self.input_noise < 1.0:
            raise ConfigError(f"controller.input_noise must be in [0, 1), got {self.input_noise}")
        groups = 1 + len(self.pareto_shapes)
        if self.num_candidates is not None and self.num_candidates % groups:
            raise ConfigError(f"controller.num_candidates must be a multiple of {groups} "
                              f"(uniform + {len(self.pareto_shapes)} Pareto groups), got {self.num_candidates}")
        if any(a <= 0 for a in self.pareto_shapes):
            raise ConfigError(f"controller.pareto_shapes must be > 0, got {self.pareto_shapes}")
        if self.num_candidates is not None and self.top_k > self.num_candidates:
            raise ConfigError(f"controller.top_k ({self.top_k}) exceeds num_candidates ({self.num_candidates})")
        f1, f2, f3 = self.explore_fractions
        if not 0.0 <= f1 <= f2 < f3:
            raise ConfigError(f"controller.explore_fractions must satisfy 0 <= f1 <= f2 < f3, got "
                              f"{self.explore_fractions}")
        for name in ("explore_full", "explore_half", "explore_floor"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"controller.{name} must be in [0, 1], got {getattr(self, name)}")
        if self.explore_delta < 0:
            raise ConfigError(f"controller.explore_delta must be >= 0, got {self.explore_delta}")
        if self.warmup_steps < 0 or any(s <= 0 for s in self.evaluation_steps):
            raise ConfigError("controller.warmup_steps must be >= 0 and controller.evaluation_steps > 0")
