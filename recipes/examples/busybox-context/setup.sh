#!/bin/sh
set -e
echo "$GREETING from setup" > /work/setup.txt
touch /work/ready
