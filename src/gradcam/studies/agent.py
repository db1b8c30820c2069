"""Why did the agent act? Grad-CAM of a small CNN policy on MiniGrid pixels (the paper's "CNNs used in
reinforcement learning").

The environment: MiniGrid's empty 8x8 room (``minigrid.envs.EmptyEnv``) with the goal *and* the agent placed
at random on each reset (in ``MiniGrid-Empty-8x8-v0`` the goal is always in the same corner, so a policy
need not look at it), fully observed as RGB pixels (``RGBImgObsWrapper``: 64x64x3, one 8x8 px tile per
cell, no view-cone highlight). Actions: turn left, turn right, move forward. Reward (MiniGrid's):
``1 - 0.9 * steps / max_steps`` on reaching the goal, else 0; ``max_steps = 256``.

The policy (:class:`PolicyNet`): a convolution with an 8x8 kernel and stride 8 (one cell per tile), a 1x1
convolution on the 8x8 grid of cells, coordinate pooling (each channel's activation weighted by the cells'
x and y: positions, linearly) and a two-layer perceptron; Grad-CAM's layer ``features.3`` is the last
ReLU, whose cells are the grid's tiles. It is trained by imitation (behaviour cloning) of the
shortest-path planner on every state of the room (every goal cell, agent cell and heading: 36 x 35 x 4 =
5040 frames), seeded and deterministic: :func:`train_policy`; ``benchmarks/train_agent.py`` made the
committed weights ``gradcam/data/agent-minigrid-policy.pt`` (SHA-256 :data:`POLICY_SHA256`, checked at load).

Measured over greedy rollouts from seeded resets: the mean return of the trained policy and of a uniformly
random policy; and for every step the Grad-CAM map of the chosen action's logit, its mass on the goal's tile
and on the agent's tile, ``sum(map * 1_tile) / sum(map)``, against the same mass of a random map (uniform
noise on the 8x8 grid, upsampled like Grad-CAM; each tile's expected share is 1/64).
"""

from __future__ import annotations

import hashlib
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..methods.gradcam import GradCAM

SIZE = 8  # the room, walls included (6 x 6 free cells)
TILE = 8  # pixels per cell
ACTIONS = ("left", "right", "forward")
LAYER = "features.3"
POLICY_PATH = Path(__file__).resolve().parent.parent / "data" / "agent-minigrid-policy.pt"
POLICY_SHA256 = "b52d54c90a9e608b0ab67161961278cd73cea81b8a5ea6fc80fb32514102b6a0"
DIRS = ((1, 0), (0, 1), (-1, 0), (0, -1))  # MiniGrid's headings: right, down, left, up


@dataclass(frozen=True)
class AgentConfig:
    """Rollouts and the figure."""

    episodes: int = 100
    map_episodes: int = 20
    seed: int = 0


QUICK = AgentConfig(episodes=20, map_episodes=5)


def require_rl():
    """Import gymnasium and minigrid, or fail with the extra to install."""
    try:
        import gymnasium  # noqa: F401
        import minigrid  # noqa: F401
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError(
            f"The agent study needs gymnasium and minigrid ({e.name} is missing): pip install 'gradcam[rl]'."
        ) from e


def make_env():
    """The random-goal empty room with RGB observations (64 x 64 x 3 uint8)."""
    require_rl()
    from minigrid.core.grid import Grid
    from minigrid.core.world_object import Goal
    from minigrid.envs import EmptyEnv
    from minigrid.wrappers import RGBImgObsWrapper

    class RandomGoalEmpty(EmptyEnv):
        def _gen_grid(self, width, height):
            self.grid = Grid(width, height)
            self.grid.wall_rect(0, 0, width, height)
            self.place_obj(Goal())
            self.place_agent()
            self.mission = "get to the green goal square"

    env = RandomGoalEmpty(size=SIZE, agent_start_pos=None, highlight=False, max_steps=4 * SIZE * SIZE)
    return RGBImgObsWrapper(env, tile_size=TILE)


class CoordPool(nn.Module):
    """(N, C, G, G) -> (N, 3C): per channel the sum over cells of the activation times the cell's x, times its
    y (both in [0, 1]), and alone: where things are, linear in the activations (CoordConv-style)."""

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        g = a.shape[-1]
        c = torch.arange(g, dtype=a.dtype, device=a.device) / (g - 1)
        return torch.cat(
            [(a * c.view(1, 1, 1, -1)).sum((2, 3)), (a * c.view(1, 1, -1, 1)).sum((2, 3)), a.sum((2, 3))],
            dim=1,
        )


class PolicyNet(nn.Module):
    """Input (N, 3, 64, 64) in [0, 1]; logits (N, 3) for left, right, forward.

    ``features``: an 8x8 convolution with stride 8 (one cell per tile) and a 1x1 convolution, each with a
    ReLU (``features.3``: the 8x8 grid of cells, Grad-CAM's layer); ``head``: :class:`CoordPool` and a
    two-layer perceptron."""

    def __init__(self, width: int = 16, hidden: int = 64):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, TILE, stride=TILE), nn.ReLU(), nn.Conv2d(width, width, 1), nn.ReLU()
        )
        self.head = nn.Sequential(
            CoordPool(),
            nn.LayerNorm(3 * width),
            nn.Linear(3 * width, hidden),
            nn.ReLU(),
            nn.Linear(hidden, len(ACTIONS)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def to_input(frames) -> torch.Tensor:
    """uint8 frames (N, H, W, 3) (numpy or tensor) as float (N, 3, H, W) in [0, 1]."""
    return torch.as_tensor(frames).permute(0, 3, 1, 2).float() / 255


def expert_action(pos: Tuple[int, int], d: int, goal: Tuple[int, int]) -> int:
    """The shortest-path planner's action in the empty room (ties: forward, then left, then right).

    The cost of a state is the turns to face a direction that shortens the distance plus the moves left:
    with no obstacles inside the walls, moving forward is optimal whenever it shortens the Manhattan distance.
    """
    dx, dy = goal[0] - pos[0], goal[1] - pos[1]
    useful = [i for i, (vx, vy) in enumerate(DIRS) if (vx and vx * dx > 0) or (vy and vy * dy > 0)]
    if d in useful:
        return 2
    if (d - 1) % 4 in useful:
        return 0
    if (d + 1) % 4 in useful:
        return 1
    return 0  # facing away from the goal on both axes' wrong side: turn (left) first


def all_states(env) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every state of the room rendered: frames (5040, 64, 64, 3) uint8, expert actions (5040,), and
    (goal x, goal y, agent x, agent y, heading) per frame."""
    from minigrid.core.grid import Grid
    from minigrid.core.world_object import Goal

    env.reset(seed=0)
    base = env.unwrapped
    cells = [(x, y) for y in range(1, SIZE - 1) for x in range(1, SIZE - 1)]
    frames, actions, states = [], [], []
    for goal in cells:
        base.grid = Grid(SIZE, SIZE)
        base.grid.wall_rect(0, 0, SIZE, SIZE)
        base.grid.set(*goal, Goal())
        for pos in cells:
            if pos == goal:
                continue
            for d in range(4):
                base.agent_pos, base.agent_dir = pos, d
                frames.append(torch.from_numpy(base.get_frame(highlight=False, tile_size=TILE)))
                actions.append(expert_action(pos, d, goal))
                states.append((*goal, *pos, d))
    return torch.stack(frames), torch.tensor(actions), torch.tensor(states)


def train_policy(
    seed: int = 0,
    epochs: int = 30,
    batch_size: int = 120,
    lr: float = 2e-3,
    log: Callable[[str], None] = print,
) -> Tuple[PolicyNet, Dict]:
    """Behaviour cloning of :func:`expert_action` on :func:`all_states` (Adam, constant rate, deterministic);
    returns the policy (eval mode) and a record (training accuracy, seconds)."""
    t0 = time.time()
    frames, actions, _ = all_states(make_env())
    x = to_input(frames)
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = PolicyNet()
            params = list(net.parameters())
            opt = torch.optim.Adam(params, lr=lr)
            n = len(x)
            gen = torch.Generator().manual_seed(seed)
            for epoch in range(epochs):
                perm = torch.randperm(n, generator=gen)
                for i in range(0, n, batch_size):
                    idx = perm[i : i + batch_size]
                    loss = F.cross_entropy(net(x[idx]), actions[idx])
                    grads = torch.autograd.grad(loss, params)
                    for p, g in zip(params, grads):
                        p.grad = g
                    opt.step()
                log(f"  [policy] epoch {epoch + 1}/{epochs}: loss {float(loss.detach()):.4f}")
    finally:
        torch.use_deterministic_algorithms(deterministic)
    for p in net.parameters():
        p.grad = None
    net.eval()
    with torch.no_grad():
        acc = float((net(x).argmax(1) == actions).float().mean())
    return net, {
        "train_accuracy": round(acc, 4),
        "train_seconds": round(time.time() - t0, 1),
        "seed": seed,
        "epochs": epochs,
        "states": n,
    }


def load_policy() -> PolicyNet:
    """The committed policy, after checking its SHA-256 against :data:`POLICY_SHA256`."""
    digest = hashlib.sha256(POLICY_PATH.read_bytes()).hexdigest()
    if digest != POLICY_SHA256:
        raise ValueError(
            f"{POLICY_PATH} has SHA-256 {digest}, expected {POLICY_SHA256}: the committed policy is "
            "damaged. Reinstall gradcam, or retrain it with benchmarks/train_agent.py."
        )
    net = PolicyNet()
    net.load_state_dict(torch.load(POLICY_PATH, map_location="cpu", weights_only=True)["state_dict"])
    return net.eval()


def rollout(
    env, policy: Optional[PolicyNet], seed: int, rng: random.Random
) -> Tuple[float, List, List, List]:
    """One episode from ``env.reset(seed=seed)``: greedy ``policy`` (``None``: uniformly random actions
    from ``rng``). Returns the return, the frames, the actions and the (goal, agent) cells per step."""
    obs, _ = env.reset(seed=seed)
    base = env.unwrapped
    goal = next(
        (x, y)
        for x in range(SIZE)
        for y in range(SIZE)
        if base.grid.get(x, y) is not None and base.grid.get(x, y).type == "goal"
    )
    frames, acts, cells, ret, done = [], [], [], 0.0, False
    while not done:
        frame = obs["image"]
        if policy is None:
            a = rng.randrange(len(ACTIONS))
        else:
            with torch.no_grad():
                a = int(policy(to_input(frame[None])).argmax(1))
        frames.append(torch.from_numpy(frame.copy()))
        acts.append(a)
        cells.append((goal, tuple(int(v) for v in base.agent_pos)))
        obs, reward, terminated, truncated, _ = env.step(a)
        ret += float(reward)
        done = terminated or truncated
    return ret, frames, acts, cells


def tile_mass(maps: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    """Share of each map's mass (N, H, W) on the tile of cell (x, y) (N, 2): sum(m * 1_tile) / sum(m)."""
    grid = maps.view(maps.shape[0], SIZE, maps.shape[1] // SIZE, SIZE, maps.shape[2] // SIZE).sum((2, 4))
    total = grid.flatten(1).sum(1)
    inside = grid[torch.arange(len(cells)), cells[:, 1], cells[:, 0]]
    return torch.where(total > 0, inside / total.clamp_min(1e-12), torch.zeros_like(total))


@dataclass
class AgentResult:
    """The issue's four numbers, the agent's tile mass, and the figure's frames and maps."""

    mean_return_trained: float
    mean_return_random_policy: float
    success_trained: float
    success_random_policy: float
    goal_mass: float
    goal_mass_random_map: float
    agent_mass: float
    agent_mass_random_map: float
    n_maps: int
    config: Dict
    figure_frames: Optional[torch.Tensor] = field(default=None, repr=False)
    figure_maps: Optional[torch.Tensor] = field(default=None, repr=False)
    figure_actions: List[int] = field(default_factory=list, repr=False)

    def summary(self) -> Dict:
        """The JSON summary: the four keys of the issue first, then the details."""
        return {k: v for k, v in asdict(self).items() if not k.startswith("figure_")}

    def sentence(self) -> str:
        """The finding in one sentence with its numbers."""
        return (
            f"Over {self.config['episodes']} seeded episodes (seed {self.config['seed']}) the trained policy's mean "
            f"return is {self.mean_return_trained:.3f} against {self.mean_return_random_policy:.3f} for a random "
            f"policy, and over {self.n_maps} steps Grad-CAM of the chosen action puts {self.goal_mass:.3f} of its "
            f"mass on the goal's tile and {self.agent_mass:.3f} on the agent's, against "
            f"{self.goal_mass_random_map:.3f} and {self.agent_mass_random_map:.3f} for a random map (one tile: 1/64)."
        )


def run(cfg: AgentConfig = AgentConfig(), log: Callable[[str], None] = print) -> AgentResult:
    """Roll out the committed and a random policy, explain the chosen actions, measure the tile mass."""
    env = make_env()
    policy = load_policy()
    rng = random.Random(cfg.seed)
    seeds = [1000 * cfg.seed + i for i in range(cfg.episodes)]
    trained = [rollout(env, policy, s, rng) for s in seeds]
    randoms = [rollout(env, None, s, rng) for s in seeds]
    frames = torch.cat([torch.stack(r[1]) for r in trained[: cfg.map_episodes]])
    acts = torch.tensor([a for r in trained[: cfg.map_episodes] for a in r[2]])
    cells = [c for r in trained[: cfg.map_episodes] for c in r[3]]
    goal = torch.tensor([c[0] for c in cells])
    agent = torch.tensor([c[1] for c in cells])
    x = to_input(frames)
    maps = GradCAM(policy, layer=LAYER)(x, target=acts).maps[:, 0].detach()
    g = torch.Generator().manual_seed(cfg.seed)
    rand = F.interpolate(
        torch.rand(len(x), 1, SIZE, SIZE, generator=g),
        size=x.shape[-2:],
        mode="bilinear",
        align_corners=False,
    )[:, 0]
    mean = lambda v: round(float(torch.as_tensor(v, dtype=torch.float64).mean()), 4)  # noqa: E731
    log(f"agent study: {len(trained)} episodes each, {len(x)} maps")
    n0 = len(trained[0][1])
    return AgentResult(
        mean_return_trained=mean([r[0] for r in trained]),
        mean_return_random_policy=mean([r[0] for r in randoms]),
        success_trained=mean([r[0] > 0 for r in trained]),
        success_random_policy=mean([r[0] > 0 for r in randoms]),
        goal_mass=mean(tile_mass(maps, goal)),
        goal_mass_random_map=mean(tile_mass(rand, goal)),
        agent_mass=mean(tile_mass(maps, agent)),
        agent_mass_random_map=mean(tile_mass(rand, agent)),
        n_maps=len(x),
        config=asdict(cfg),
        figure_frames=x[:n0],
        figure_maps=maps[:n0],
        figure_actions=acts[:n0].tolist(),
    )
