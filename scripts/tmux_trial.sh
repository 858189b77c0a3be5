#!/usr/bin/env bash
# The new-user trial of the wake issue, in tmux: chat with five facts among small talk, /facts,
# /forget one, Ctrl-D and /sleep, then a new process asks about each. Screens are saved as
# OUT/session1.txt and OUT/session2.txt.   Usage: scripts/tmux_trial.sh [OUT]
set -u
S=trial
HERE=$(cd "$(dirname "$0")/.." && pwd)
BIN=${SLEEPLLM_BIN:-$HERE/.venv/bin/sleepllm}
OUT=${1:-/tmp/sleepllm-trial}
MEM=$OUT/mem
rm -rf "$OUT"; mkdir -p "$OUT"
wait_prompt() {  # wait until the last non-empty line is "you>" prompt
  for i in $(seq 1 600); do
    last=$(tmux capture-pane -p -t $S | grep -v '^\s*$' | grep -v 'awake\|drowsy\|sleepy' | tail -1)
    [[ "${last%% }" == "you>" ]] && return 0
    [[ "$last" == *"[y/N]"* ]] && return 0
    sleep 1
  done
}
say() { tmux send-keys -t $S -l "$1"; tmux send-keys -t $S Enter; sleep 1; wait_prompt; }
tmux kill-session -t $S 2>/dev/null
tmux new-session -d -s $S -x 160 -y 200 "$BIN chat --memory $MEM --max-tokens 60; sleep 600"
wait_prompt
say "Hi! How is it going today?"
say "By the way, we named the new puppy Biscuit."
say "What's a good name for a goldfish?"
say "I moved to Bergen last spring, lovely city."
say "My sister is called Delphine, she is a nurse."
say "Tell me a fun fact about octopuses."
say "Oh and my friend Aria drives a Volvo now."
say "I work as a glassblower, which is fun."
say "/facts"
say "/forget Volvo"
tmux send-keys -t $S C-d; sleep 2; wait_prompt
tmux send-keys -t $S "y" Enter
for i in $(seq 1 900); do tmux capture-pane -p -t $S -S -300 | grep -q "^slept" && break; sleep 1; done
sleep 3
tmux capture-pane -p -t $S -S -300 > $OUT/session1.txt
tmux kill-session -t $S
tmux new-session -d -s $S -x 160 -y 200 "$BIN chat --memory $MEM --max-tokens 40; sleep 600"
wait_prompt
for q in "What's my dog called?" "Where do I live?" "What is my sister's name?" "What do I do for a living?" "What car does Aria drive?"; do
  say "$q"; say "/clear"
done
tmux capture-pane -p -t $S -S -300 > $OUT/session2.txt
tmux kill-session -t $S
