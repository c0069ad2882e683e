#!/usr/bin/env bash
# Session 11, call 3: the fair benchmark of the final build and the Python package's GPU tests,
# the same call as session 10's (bench/probe-s10e.sh: bench/peers.py, DESIGN.md section 5), its
# logs under /tmp/probe-s11c.
OUT=${OUT:-/tmp/probe-s11c} exec bash "$(dirname "$0")/probe-s10e.sh"
