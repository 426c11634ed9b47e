#!/bin/sh
# Printed by the example image's start command.
echo "${GREETING:-hello}: $(hello --version | head -n 1)"
