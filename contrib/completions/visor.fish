# fish completion for visor(1), Zeta Visor. Installed as
# /usr/share/fish/vendor_completions.d/visor.fish; or put it in
# ~/.config/fish/completions/. Keep in step with USAGE and COMMANDS in src/cli.rs.

set -l visor_commands init run check status list prepare restart switch version help

complete -c visor -f

# Commands, while none is given yet.
complete -c visor -n "not __fish_seen_subcommand_from $visor_commands" -a init -d 'create a new home folder'
complete -c visor -n "not __fish_seen_subcommand_from $visor_commands" -a run -d 'supervise the node (the service command)'
complete -c visor -n "not __fish_seen_subcommand_from $visor_commands" -a check -d 'validate config, run-configs and binaries'
complete -c visor -n "not __fish_seen_subcommand_from $visor_commands" -a status -d 'show the running version and pending upgrade'
complete -c visor -n "not __fish_seen_subcommand_from $visor_commands" -a list -d 'list every version folder, ready or why not'
complete -c visor -n "not __fish_seen_subcommand_from $visor_commands" -a prepare -d 'install the upgrade folder for VERSION now'
complete -c visor -n "not __fish_seen_subcommand_from $visor_commands" -a restart -d 'stop the node and start it again'
complete -c visor -n "not __fish_seen_subcommand_from $visor_commands" -a switch -d 'move to the patch release TAG'
complete -c visor -n "not __fish_seen_subcommand_from $visor_commands" -a version -d "print Visor's version and commit, and the node's"
complete -c visor -n "not __fish_seen_subcommand_from $visor_commands" -a help -d "print the usage, or a command's"

# `visor help COMMAND`.
complete -c visor -n "__fish_seen_subcommand_from help; and test (count (commandline -opc)) -eq 2" -a "$visor_commands"

# Options, each with the commands that take it.
complete -c visor -s h -l help -d 'print the help (of the command given)'
complete -c visor -s V -l version -n "not __fish_seen_subcommand_from $visor_commands" -d "print Visor's version and commit"
complete -c visor -l home -x -a '(__fish_complete_directories (commandline -ct))' -n "not __fish_seen_subcommand_from help" -d 'the home folder (default: $VISOR_HOME)'
complete -c visor -s o -l output -x -a 'text human json' -n "not __fish_seen_subcommand_from $visor_commands; or __fish_seen_subcommand_from status list version" -d 'output format'
complete -c visor -l with-data-node -n "__fish_seen_subcommand_from init" -d 'write run-configs that start a data node too'
complete -c visor -l wait -x -n "__fish_seen_subcommand_from restart switch" -d 'seconds to wait for the outcome, 1 to 86400'
complete -c visor -l force -n "__fish_seen_subcommand_from switch" -d 'skip the version guard (the folder is still checked)'
complete -c visor -l no-exec -n "__fish_seen_subcommand_from list" -d 'do not run the binaries to ask their versions'

# `visor switch TAG`: the release folders of the home folder (--home, or $VISOR_HOME).
function __visor_tags
    set -l home $VISOR_HOME
    set -l tokens (commandline -opc)
    for i in (seq (count $tokens))
        switch $tokens[$i]
            case '--home=*'
                set home (string replace -- '--home=' '' $tokens[$i])
            case --home
                set -l next (math $i + 1)
                set -q tokens[$next]; and set home $tokens[$next]
        end
    end
    test -n "$home"; and test -d "$home"; or return
    for file in $home/*/run-config.toml
        set -l name (basename (dirname $file))
        test "$name" != current; and echo $name
    end
end
complete -c visor -n "__fish_seen_subcommand_from switch" -a "(__visor_tags)" -d 'release folder'
complete -c visor -l from -r -F -n "__fish_seen_subcommand_from prepare" -d 'a local binary or zip, or an https:// URL'
complete -c visor -l sha256 -x -n "__fish_seen_subcommand_from prepare" -d 'the SHA-256 the source must have'
complete -c visor -l signature -r -F -n "__fish_seen_subcommand_from prepare" -d 'a minisign signature file of the source (repeatable)'
