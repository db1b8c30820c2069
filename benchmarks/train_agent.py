"""Train the agent study's MiniGrid policy and write ``src/gradcam/data/agent-minigrid-policy.pt``.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/train_agent.py [--seed 0]

Needs the ``rl`` extra (gymnasium, minigrid). Prints the file's SHA-256: put it into
``gradcam.studies.agent.POLICY_SHA256``. Behaviour cloning of the shortest-path planner on all 5040 states,
seeded and deterministic (one thread: about a minute of CPU).
"""

import argparse
import hashlib

import torch

from gradcam.studies import agent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(agent.POLICY_PATH))
    args = p.parse_args()
    torch.set_num_threads(1)
    net, info = agent.train_policy(seed=args.seed)
    torch.save({"state_dict": net.state_dict(), "info": info}, args.out)
    print(info)
    print("sha256", hashlib.sha256(open(args.out, "rb").read()).hexdigest())


if __name__ == "__main__":
    main()
