#!/bin/bash
# The store's CLI verbs (images, rm, gc, fsck, df) against a real store:
# --help, table and --json output, exit codes, one-line errors on stderr.
source "$(dirname "$0")/lib/store_env.sh"
S=$WORK/store

for verb in images rm gc fsck df; do
  out=$(sbx "$verb" --help) || fail "$verb --help exit $?"
  grep -q "^usage: sbx-image $verb" <<<"$out" || fail "$verb --help: no usage line"
  grep -q -- "--json" <<<"$out" || fail "$verb --help does not mention --json"
  grep -q -- "--store" <<<"$out" || fail "$verb --help does not mention --store"
done
sbx gc --help | grep -q -- "--max-bytes" || fail "gc --help lacks --max-bytes"
sbx gc --help | grep -q -- "--dry-run" || fail "gc --help lacks --dry-run"
sbx gc --help | grep -q -- "--unpacked  *also remove the unpacked layer directories" ||
  fail "gc --help lacks --unpacked"
sbx gc --help | grep -q "unpacked_removed" && sbx gc --help | grep -q "unpacked_bytes_freed" ||
  fail "gc --help does not name the unpacked fields of --json"
sbx df --help | grep -q "unpacked_bytes}" || fail "df --help does not name unpacked_bytes"
sbx df --help | grep -q "gc --unpacked" || fail "df --help does not say how to free the cache"

# No store yet: listing commands show nothing, the others say there is
# none, and none of them makes one.
[[ $(sbx --store "$S" images --json) == "[]" ]] || fail "empty images --json"
sbx --store "$S" images | grep -q "^NAME  *DIGEST  *CREATED" || fail "images header"
[[ $(sbx --store "$S" mounts --json) == "[]" && $(sbx --store "$S" builds --json) == "[]" ]] ||
  fail "mounts/builds of no store"
for verb in gc fsck df "rm x"; do
  if sbx --store "$S" $verb >/dev/null 2>"$WORK/err"; then fail "$verb worked on no store"; fi
  grep -q "no store at '$S'" "$WORK/err" || fail "$verb on no store: $(cat "$WORK/err")"
done
[[ ! -e $S ]] || fail "a read-only command made the store"

m1=$("$STORE_TOOL" "$S" put-image docker.io/library/busybox:1 1 300000)
[[ -d $S && $(stat -c %a "$S") == 700 ]] || fail "store root not created 0700"
m2=$("$STORE_TOOL" "$S" put-image recipe:sha256:abc 2 300000)
"$STORE_TOOL" "$S" put-image cache:sha256:def 3 1000 >/dev/null
sbx --store "$S" images >"$WORK/out"
grep -q "^docker.io/library/busybox:1  *${m1:7:12}  *20" "$WORK/out" || fail "images row: $(cat "$WORK/out")"
grep -q "cache:" "$WORK/out" && fail "images shows cache names without --all"
sbx --store "$S" images --all | grep -q "^cache:sha256:def" || fail "images --all"
sbx --store "$S" images recipe: | grep -q "^recipe:sha256:abc" || fail "images PREFIX"
n=$(sbx --store "$S" images recipe: | wc -l); ((n == 2)) || fail "images PREFIX lists $n lines"
sbx --store "$S" images --json | jq -e --arg d "$m2" \
  '.[] | select(.name == "recipe:sha256:abc") | .digest == $d and (.created | type) == "number"' \
  >/dev/null || fail "images --json"
SBX_STORE=$S sbx images | grep -q busybox || fail "SBX_STORE is not honored"
sbx images --store "$S" | grep -q busybox || fail "--store after the verb"

# df
sbx --store "$S" df --json | jq -e '.names == 3 and .layers == 3 and .blobs == 6 and
  .logical_bytes > .stored_bytes' >/dev/null || fail "df --json: $(sbx --store "$S" df --json)"
sbx --store "$S" df | grep -q "^STORED  *IMAGES  *SAVED" || fail "df table"
# a store keeping as much as its images take saves nothing (not "-1%")
"$STORE_TOOL" "$WORK/small" put-image docker.io/library/x:1 9 1000 >/dev/null
sbx --store "$WORK/small" df | awk 'NR == 2 {print $5}' | grep -qx none ||
  fail "df SAVED of a store that saves nothing: $(sbx --store "$WORK/small" df)"

# rm: unknown names are a one-line error, the others still go.
rc=0
sbx --store "$S" rm recipe:sha256:abc nosuch >"$WORK/out" 2>"$WORK/err" || rc=$?
((rc == 1)) || fail "rm with an unknown name: exit $rc"
[[ $(cat "$WORK/out") == "recipe:sha256:abc" ]] || fail "rm stdout: $(cat "$WORK/out")"
[[ $(wc -l <"$WORK/err") == 1 ]] && grep -q "no image named 'nosuch'" "$WORK/err" ||
  fail "rm stderr: $(cat "$WORK/err")"
rc=0; sbx --store "$S" rm >/dev/null 2>&1 || rc=$?
((rc == 2)) || fail "rm without names: exit $rc, want 2"

# gc: dry run, then for real.
sbx --store "$S" gc --dry-run --json | jq -e '.dry_run and .blobs_removed == 2 and
  .layers_removed == 1' >/dev/null || fail "gc --dry-run"
sbx --store "$S" gc --json | jq -e '.blobs_removed == 2 and .layers_removed == 1 and
  .bytes_freed > 0' >/dev/null || fail "gc"
sbx --store "$S" gc | grep -q "^removed 0 blobs, 0 layers" || fail "second gc"
rc=0; sbx --store "$S" gc --max-bytes 12X 2>"$WORK/err" || rc=$?
((rc == 2)) && grep -q "'12X' is not a size" "$WORK/err" || fail "bad --max-bytes: $rc $(cat "$WORK/err")"
rc=0; sbx --store "$S" gc --bogus 2>"$WORK/err" || rc=$?
((rc == 2)) && grep -q "unknown option '--bogus'" "$WORK/err" || fail "unknown option: $rc"
sbx --store "$S" gc --max-bytes 1K --json | jq -e '.names_evicted == 2' >/dev/null ||
  fail "gc --max-bytes 1K"
[[ $(sbx --store "$S" images --all --json | jq length) == 0 ]] || fail "eviction left names"

# gc --unpacked: the unpacked layer cache goes, the layer stays; df shows the
# cache apart from STORED, and what --help says is what happens.
"$STORE_TOOL" "$S" put-image unp 5 300000 >/dev/null
l=$(basename "$(ls "$S"/layers/sha256/*.zst)" .zst)
mkdir "$S/unpacked/$l"
head -c 200000 /dev/urandom >"$S/unpacked/$l/file"
stored=$(sbx --store "$S" df --json | jq .stored_bytes)
sbx --store "$S" df --json | jq -e --argjson st "$stored" '.unpacked_bytes >= 200000 and
  .unpacked_bytes < 300000 and .stored_bytes == $st' >/dev/null ||
  fail "df --json unpacked_bytes: $(sbx --store "$S" df --json)"
sbx --store "$S" df | grep -q "^unpacked layer cache: 2[0-9][0-9]\.[0-9] kB (not in STORED" ||
  fail "df unpacked line: $(sbx --store "$S" df)"
sbx --store "$S" gc | grep -q "; 0 unpacked layer dirs, 0 B freed$" || fail "gc without --unpacked"
[[ -f $S/unpacked/$l/file ]] || fail "gc without --unpacked removed the cache"
sbx --store "$S" gc --unpacked --dry-run --json | jq -e '.dry_run and .unpacked_removed == 1
  and .unpacked_bytes_freed >= 200000 and .layers_removed == 0' >/dev/null ||
  fail "gc --unpacked --dry-run: $(sbx --store "$S" gc --unpacked --dry-run --json)"
[[ -f $S/unpacked/$l/file ]] || fail "gc --unpacked --dry-run removed the cache"
sbx --store "$S" gc --unpacked >"$WORK/out"
grep -q "^removed 0 blobs, 0 layers, 0 names evicted; .* stored; 1 unpacked layer dirs, 2[0-9][0-9]\.[0-9] kB freed$" \
  "$WORK/out" || fail "gc --unpacked: $(cat "$WORK/out")"
[[ ! -e $S/unpacked/$l && -f $S/layers/sha256/$l.zst && -z $(ls "$S/tmp") ]] ||
  fail "gc --unpacked: cache left or layer gone"
sbx --store "$S" df --json | jq -e '.unpacked_bytes == 0 and .layers == 1' >/dev/null ||
  fail "df after gc --unpacked"
sbx --store "$S" rm unp >/dev/null
sbx --store "$S" gc >/dev/null

# fsck: clean, then damage: exit 1, one error line, the file quarantined.
"$STORE_TOOL" "$S" put-image img 4 300000 >/dev/null
sbx --store "$S" fsck | grep -q "^checked 2 blobs, 1 layers: 0 corrupt" || fail "fsck clean"
f=$(ls "$S"/layers/sha256/*.zst)
printf 'garbage' | dd of="$f" bs=1 seek=100 conv=notrunc 2>/dev/null
rc=0
sbx --store "$S" fsck --json >"$WORK/out" 2>"$WORK/err" || rc=$?
((rc == 1)) || fail "fsck on a damaged store: exit $rc"
jq -e '.clean == false and .corrupt == 1' "$WORK/out" >/dev/null || fail "fsck --json: $(cat "$WORK/out")"
# --json: the error is the last stderr line, one JSON object like every other line
tail -n 1 "$WORK/err" | jq -e '.event == "error" and (.message | test("1 corrupt [(]quarantined[)]"))' >/dev/null ||
  fail "fsck error event: $(cat "$WORK/err")"
! grep -qv '^{' "$WORK/err" || fail "fsck --json: a stderr line that is not JSON: $(cat "$WORK/err")"
[[ -n $(ls "$S/quarantine") ]] || fail "nothing quarantined"
sbx --store "$S" fsck >/dev/null || fail "fsck after repair"

# A store that cannot be opened: one clear line, exit 1.
touch "$WORK/afile"
rc=0; sbx --store "$WORK/afile" images 2>"$WORK/err" || rc=$?
((rc == 1)) && [[ $(wc -l <"$WORK/err") == 1 ]] && grep -q "afile" "$WORK/err" ||
  fail "bad store: exit $rc: $(cat "$WORK/err")"
# --store "" (an unset variable in a script) is a usage error, never the
# default store: `gc --store "$UNSET"` must not clean the machine's store.
for args in '--store= images' 'gc --store=' 'images --store ""'; do
  rc=0
  eval "SBX_STORE='$WORK/default' '$SBX_BIN' $args" >/dev/null 2>"$WORK/err" || rc=$?
  ((rc == 2)) && grep -q "store needs a directory" "$WORK/err" || fail "$args: exit $rc: $(cat "$WORK/err")"
  [[ ! -e $WORK/default ]] || fail "$args opened the default store"
done
echo "PASS: store CLI"

# Commands that need root say so first, in one line, and touch nothing.
if command -v setpriv >/dev/null; then
  for cmd in "build $WORK/none.yaml" "unpack x $WORK/u" "mount x $WORK/m" "umount x" \
    "pull --unpack 127.0.0.1:9/x"; do
    rc=0
    setpriv --reuid 65534 --regid 65534 --clear-groups "$SBX_BIN" --store "$WORK/np" $cmd \
      >/dev/null 2>"$WORK/err" || rc=$?
    verb=${cmd%% *}
    [[ $cmd == pull* ]] && verb="pull --unpack"
    ((rc == 1)) && [[ $(wc -l <"$WORK/err") == 1 ]] && grep -q "error: $verb needs root (" "$WORK/err" ||
      fail "non-root $verb: exit $rc: $(cat "$WORK/err")"
  done
  [[ ! -e $WORK/np && ! -e $WORK/u && ! -e $WORK/m ]] || fail "a refused non-root command made something"
else
  fail "setpriv (util-linux) is missing"
fi

# One heading style: every command's --help starts "usage: sbx-image VERB",
# lists its "options:" and ends with "examples:" of that command.
verbs=$("$SBX_BIN" --help | awk '/^commands:/ {f = 1; next} /^$/ {f = 0} f {print $1}')
[[ $(wc -w <<<"$verbs") -ge 25 ]] || fail "sbx-image --help lists too few commands: $verbs"
for v in $verbs; do
  h=$("$SBX_BIN" $v --help) || fail "$v --help failed"
  [[ $(head -n 1 <<<"$h") == "usage: sbx-image $v"* ]] || fail "$v --help starts '$(head -n 1 <<<"$h")'"
  grep -q '^options:' <<<"$h" || fail "$v --help has no 'options:' heading"
  ex=$(sed -n '/^examples:$/,$p' <<<"$h" | tail -n +2)
  grep -q "^  sbx-image $v " <<<"$ex" || fail "$v --help has no example of $v"
  ! awk 'length > 80' <<<"$ex" | grep -q . || fail "$v --help: an example over 80 columns"
  ! grep -qv '^  ' <<<"$ex" || fail "$v --help: text after its examples: $(grep -v '^  ' <<<"$ex" | head -1)"
done
"$SBX_BIN" --help | grep -q '^examples:$' || fail "sbx-image --help has no examples"
