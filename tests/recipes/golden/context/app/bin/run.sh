#!/bin/sh
exec python3 /srv/app/main.py "$@"
