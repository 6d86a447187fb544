package nodessh

import "strings"

// sudoScript is the node's sudo: root runs commands as root, so it only
// parses sudo's options and execs the command, unless a fault makes it
// behave like a sudoers that wants a password (sudo-password), a TTY
// (sudo-tty, requiretty) or refuses (sudo-denied), with sudo 1.9's
// messages and exit status 1. It never waits without a terminal, and -n
// never waits at all.
func sudoScript(node string) string {
	return strings.ReplaceAll(`#!/bin/sh
# runbook-lab: sudo of node @NODE@ (faults: `+InnerLab+`/faults/@NODE@/sudo-*)
faults=`+InnerLab+`/faults/@NODE@
nonint=0
stdin=0
while [ $# -gt 0 ]; do
  case "$1" in
    -n|--non-interactive) nonint=1; shift ;;
    -S|--stdin) stdin=1; shift ;;
    -u|-g|-C|-D|-h|-p|-r|-t|-T|-U) shift; shift ;;
    -V|--version) echo "Sudo version 1.9.13p3"; exit 0 ;;
    --) shift; break ;;
    --*) shift ;;
    -*) case "$1" in *n*) nonint=1 ;; esac; shift ;;
    *) break ;;
  esac
done
if [ $# -eq 0 ]; then
  echo "usage: sudo -h | -K | -k | -V" >&2
  echo "usage: sudo -v [-ABkNnS] [-g group] [-h host] [-p prompt] [-u user]" >&2
  echo "usage: sudo -l [-ABkNnS] [-g group] [-h host] [-p prompt] [-U user] [-u user] [command [arg ...]]" >&2
  echo "usage: sudo [-ABbEHkNnPS] [-C num] [-D directory] [-g group] [-h host] [-p prompt] [-R directory] [-T timeout] [-u user] [VAR=value] [-i | -s] [command [arg ...]]" >&2
  exit 1
fi
hastty() { (: </dev/tty) 2>/dev/null; }
if [ -e "$faults/sudo-tty" ] && ! hastty; then
  echo "sudo: sorry, you must have a tty to run sudo" >&2
  exit 1
fi
if [ -e "$faults/sudo-denied" ]; then
  cmd=$(command -v "$1" 2>/dev/null || echo "$1")
  shift
  echo "Sorry, user $(id -un) is not allowed to execute '$cmd${*:+ $*}' as root on $(hostname)." >&2
  exit 1
fi
if [ -e "$faults/sudo-password" ]; then
  if [ "$nonint" = 1 ]; then
    echo "sudo: a password is required" >&2
    exit 1
  fi
  if [ "$stdin" = 0 ] && ! hastty; then
    echo "sudo: a terminal is required to read the password; either use the -S option to read from standard input or configure an askpass helper" >&2
    echo "sudo: a password is required" >&2
    exit 1
  fi
  # No password is right: the lab's root has none.
  for i in 1 2 3; do
    if [ "$stdin" = 1 ]; then
      printf '[sudo] password for %s: ' "$(id -un)" >&2
      read -r _pw || { echo >&2; echo "sudo: no password was provided" >&2; exit 1; }
    else
      printf '[sudo] password for %s: ' "$(id -un)" >/dev/tty
      stty -echo </dev/tty 2>/dev/null
      read -r _pw </dev/tty; rc=$?
      stty echo </dev/tty 2>/dev/null
      echo >/dev/tty
      [ $rc = 0 ] || { echo "sudo: no password was provided" >&2; exit 1; }
    fi
    [ $i -lt 3 ] && echo "Sorry, try again." >&2
  done
  echo "sudo: 3 incorrect password attempts" >&2
  exit 1
fi
if ! command -v "$1" >/dev/null 2>&1; then
  echo "sudo: $1: command not found" >&2
  exit 1
fi
exec "$@"
`, "@NODE@", node)
}
