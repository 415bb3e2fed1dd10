# bash completion for visor(1), Zeta Visor. Installed as
# /usr/share/bash-completion/completions/visor; or source it from ~/.bashrc.
# Keep in step with USAGE and COMMANDS in src/cli.rs.

_visor() {
    local cur prev words cword
    if declare -F _init_completion >/dev/null; then
        _init_completion || return
    else
        cur=${COMP_WORDS[COMP_CWORD]}
        prev=${COMP_WORDS[COMP_CWORD-1]}
        words=("${COMP_WORDS[@]}")
        cword=$COMP_CWORD
    fi

    local commands="init run check status list prepare restart switch version help"

    # The value of an option.
    case $prev in
        --home)
            compopt -o filenames 2>/dev/null
            mapfile -t COMPREPLY < <(compgen -d -- "$cur")
            return
            ;;
        --output | -o)
            mapfile -t COMPREPLY < <(compgen -W "text human json" -- "$cur")
            return
            ;;
        --wait | --sha256)
            return
            ;;
        --from | --signature)
            compopt -o filenames 2>/dev/null
            mapfile -t COMPREPLY < <(compgen -f -- "$cur")
            return
            ;;
    esac

    # The command (the first word that is not an option or an option's value) and the
    # home folder given so far.
    local command="" home=${VISOR_HOME-} i=1 positional=0
    while [ "$i" -lt "$cword" ]; do
        case ${words[i]} in
            --home | --output | -o | --wait | --from | --sha256 | --signature)
                [ "${words[i]}" = --home ] && home=${words[i+1]-}
                i=$((i + 1))
                ;;
            --home=*) home=${words[i]#--home=} ;;
            -*) ;;
            *)
                if [ -z "$command" ]; then
                    command=${words[i]}
                else
                    positional=$((positional + 1))
                fi
                ;;
        esac
        i=$((i + 1))
    done

    if [[ $cur == -* ]]; then
        local options="--help -h"
        case $command in
            "") options="--home --output --version -V --help -h" ;;
            init) options="--home --with-data-node --help -h" ;;
            run | check) options="--home --help -h" ;;
            prepare) options="--home --from --sha256 --signature --help -h" ;;
            status) options="--home --output -o --help -h" ;;
            list) options="--home --output -o --no-exec --help -h" ;;
            restart) options="--home --wait --help -h" ;;
            switch) options="--home --wait --force --help -h" ;;
            version) options="--home --output -o --help -h" ;;
        esac
        mapfile -t COMPREPLY < <(compgen -W "$options" -- "$cur")
        return
    fi

    case $command in
        "") mapfile -t COMPREPLY < <(compgen -W "$commands" -- "$cur") ;;
        help)
            [ "$positional" -eq 0 ] && mapfile -t COMPREPLY < <(compgen -W "$commands" -- "$cur")
            ;;
        switch)
            # The release folders in the home folder, other than current and Visor's own.
            if [ "$positional" -eq 0 ] && [ -n "$home" ] && [ -d "$home" ]; then
                local tags=() entry
                for entry in "$home"/*/run-config.toml; do
                    [ -e "$entry" ] || continue
                    entry=${entry%/run-config.toml}
                    entry=${entry##*/}
                    [ "$entry" = current ] || tags+=("$entry")
                done
                mapfile -t COMPREPLY < <(compgen -W "${tags[*]}" -- "$cur")
            fi
            ;;
    esac
}

complete -F _visor visor
