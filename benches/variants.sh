# The variants of examples/axum_server that the server benches compare (see
# benches/server_overhead.rs), the flags that select each, and the baseline each is compared
# with. Sourced by benches/wrk.sh, benches/instructions.sh and benches/compare_builds.sh.

# Every variant, baselines first.
all_variants=(bare hygienic no-metrics bare-hyper own-loop own-loop-no-metrics)

# variant_flags NAME: prints the flags of variant NAME; an unknown name is an error (status 2).
variant_flags() {
    case $1 in
        bare) echo --bare ;;
        hygienic) echo ;;
        no-metrics) echo --no-metrics ;;
        bare-hyper) echo --bare-hyper ;;
        own-loop) echo --hyper-loop ;;
        own-loop-no-metrics) echo --hyper-loop --no-metrics ;;
        *)
            echo "$(basename "$0"): unknown variant $1 (${all_variants[*]})" >&2
            return 2
            ;;
    esac
}

# variant_baseline NAME: the variant NAME is compared with (bare axum::serve for the hygienic
# listener, plain hyper-util for the crate's own serve loop); nothing for a baseline.
variant_baseline() {
    case $1 in
        hygienic | no-metrics) echo bare ;;
        own-loop | own-loop-no-metrics) echo bare-hyper ;;
        *) echo ;;
    esac
}

# variant_cpu_target NAME: the most CPU per request NAME may take, as a ratio to its baseline.
variant_cpu_target() {
    case $1 in
        hygienic | own-loop) echo 1.03 ;;
        no-metrics | own-loop-no-metrics) echo 1.015 ;;
        *) echo ;;
    esac
}
