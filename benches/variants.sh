# The variants of examples/axum_server that the server benches compare (see benches/wrk.sh), and
# the flags that select each. Sourced by benches/instructions.sh and benches/compare_builds.sh.

# variant_flags NAME: prints the flags of variant NAME; an unknown name is an error (status 2).
variant_flags() {
    case $1 in
        bare) echo --bare ;;
        hygienic) echo ;;
        own-loop) echo --hyper-loop --no-metrics ;;
        no-metrics) echo --no-metrics ;;
        *)
            echo "$(basename "$0"): unknown variant $1 (bare, hygienic, own-loop, no-metrics)" >&2
            return 2
            ;;
    esac
}
