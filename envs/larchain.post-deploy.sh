#!/usr/bin/env bash
# Run by Snakemake (--software-deployment-method conda) right after it creates the
# environment of envs/larchain.yaml, inside that environment, from the workflow's
# working directory: installs this repository's larchain package into it.
set -euo pipefail
pip install --no-deps -e .
