#!/usr/bin/env bats
# Meta-tests over every command: --help works, its man page exists and
# renders, and the top-level CLI conventions hold.

setup() { SPATTN=${SPATTN:-$BATS_TEST_DIRNAME/../../build/spattn}; MAN="$BATS_TEST_DIRNAME/../../man"; }

commands() { "$SPATTN" --help | awk '/^commands:/{f=1;next} f && /^  [a-z]/{print $1}' | grep -v '^help$'; }

@test "every command has --help on stdout, exit 0" {
    for c in $(commands); do
        run "$SPATTN" "$c" --help
        [ "$status" -eq 0 ] || { echo "$c --help exited $status"; false; }
        [[ "$output" == usage:* ]] || { echo "$c --help: $output"; false; }
    done
}

@test "spattn help COMMAND equals COMMAND --help" {
    for c in $(commands); do
        a=$("$SPATTN" help "$c"); b=$("$SPATTN" "$c" --help)
        [ "$a" = "$b" ]
    done
}

@test "every command has a man page that renders without warnings" {
    for c in $(commands); do
        f="$MAN/spattn-$c.1"
        [ -f "$f" ] || { echo "missing $f"; false; }
        out=$(groff -ww -man -z "$f" 2>&1)
        [ -z "$out" ] || { echo "$f: $out"; false; }
        grep -q '^\.SH EXIT STATUS' "$f" || { echo "$f has no EXIT STATUS"; false; }
        grep -q '^\.SH EXAMPLES' "$f" || { echo "$f has no EXAMPLES"; false; }
    done
    [ -f "$MAN/spattn.1" ] && [ -f "$MAN/spattn-spec.5" ]
}

@test "every command's options appear in its man page" {
    for c in $(commands); do
        for opt in $("$SPATTN" "$c" --help | grep -oE -- '--[a-z][a-z0-9-]+' | sort -u); do
            [ "$opt" = "--help" ] && continue
            grep -q -- "${opt//-/\\\\-}\|$opt" "$MAN/spattn-$c.1" || { echo "spattn-$c.1 lacks $opt"; false; }
        done
    done
}

@test "spattn(1) lists every command" {
    for c in $(commands); do grep -q "spattn\\\\-$c\|spattn-$c" "$MAN/spattn.1" || { echo "spattn.1 lacks $c"; false; }; done
}

@test "--version prints the version and the build: commit, compiler, CUDA, NVRTC (issue 19)" {
    run "$SPATTN" --version
    [ "$status" -eq 0 ]
    [[ "${lines[0]}" =~ ^spattn\ [0-9]+\.[0-9]+\.[0-9]+$ ]]
    [[ "$output" == *$'\ncommit:   '[0-9a-f]* || "$output" == *$'\ncommit:   unknown'* ]]
    [[ "$output" == *$'\ncompiler: '[a-z]*' '[0-9]* ]]
    [[ "$output" == *$'\nCUDA:     '[0-9]*.[0-9]* ]]
    [[ "$output" == *$'\nNVRTC:    '* ]]
    run "$SPATTN" --version --json
    [ "$status" -eq 0 ]
    echo "$output" | jq -e '(.version | test("^[0-9]+\\.[0-9]+\\.[0-9]+$")) and (.commit | length) > 0
                            and (.compiler | length) > 0 and .cuda_version >= 11000 and (.nvrtc_version | type) == "number"
                            and (.sqlite_version | length) > 0 and (.libyaml_version | length) > 0'
    run "$SPATTN" --version --bogus
    [ "$status" -eq 2 ]
}

@test "no command: usage on stderr, exit 2" {
    run "$SPATTN"
    [ "$status" -eq 2 ]
}

@test "unknown command: exit 2 with a did-you-mean hint" {
    run "$SPATTN" plna
    [ "$status" -eq 2 ]
    [[ "$output" == *"'plna' is not a spattn command"* ]]
    [[ "$output" == *"did you mean 'spattn plan'"* ]]
}

@test "unknown flag: exit 2 with a hint" {
    run "$SPATTN" plan --no-such-flag
    [ "$status" -eq 2 ]
    [[ "$output" == *"unknown option '--no-such-flag'"* ]]
    [[ "$output" == *"hint:"* ]]
}

@test "help for an unknown command: exit 2" {
    run "$SPATTN" help frobnicate
    [ "$status" -eq 2 ]
}

@test "a closed stdout is reported, not ignored" {
    run bash -c "'$SPATTN' --help >/dev/full"
    [ "$status" -ne 0 ]
}

@test "completion bash: valid bash, every command and every option of its --help (issue 19)" {
    script=$("$SPATTN" completion bash)
    bash -n <<<"$script"
    for c in $(commands); do
        [[ "$script" == *"    $c)"* ]] || { echo "no case for $c"; false; }
        for opt in $("$SPATTN" "$c" --help | grep -oE -- '^ +(-[a-z], )?--[a-z][a-z0-9-]+' | grep -oE -- '--[a-z0-9-]+'); do
            echo "$script" | awk -v c="    $c)" '$0 == c {f=1; next} f && /^    [a-z]+\)/ {f=0} f' | grep -q -- " $opt\| '$opt\|'$opt" ||
                { echo "$c lacks $opt"; false; }
        done
    done
    # complete "spattn plan --se" and "spattn cache l" in a bash with the script loaded
    out=$(bash -c 'source /dev/stdin; COMP_WORDS=(spattn plan --se); COMP_CWORD=2; _spattn; echo "${COMPREPLY[*]}"
                   COMP_WORDS=(spattn cache l); COMP_CWORD=2; _spattn; echo "${COMPREPLY[*]}"
                   COMP_WORDS=(spattn co); COMP_CWORD=1; _spattn; echo "${COMPREPLY[*]}"' <<<"$script")
    [ "$out" = $'--seq-len\nlist\ncompile completion' ]
}

@test "completion zsh: a #compdef script with every command; bad shell exits 2" {
    script=$("$SPATTN" completion zsh)
    [[ "$script" == "#compdef spattn"* ]]
    for c in $(commands); do [[ "$script" == *"    $c)"* ]] || { echo "no case for $c"; false; }; done
    [[ "$script" == *"'--seq-len["*"]:value:_files'"* ]]
    if command -v zsh >/dev/null; then zsh -n <<<"$script"; fi
    run "$SPATTN" completion fish
    [ "$status" -eq 2 ]
}
