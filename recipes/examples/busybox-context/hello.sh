#!/bin/sh
echo "${GREETING:-hello} from busybox"
