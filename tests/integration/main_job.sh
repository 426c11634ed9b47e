#!/bin/bash
# Placeholder main job until the store lands: show the CLI answers.
set -euo pipefail
"$1" --help
