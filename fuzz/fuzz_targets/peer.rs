//! Arbitrary peer messages into a replica of the `kv` service: the input is
//! an inbox (a sender byte, then a message as `paxkv`'s peer frames carry
//! it, again and again; the first byte makes the replica a follower or the
//! leader), fed one message at a time. Invariant H1: nothing from the
//! network makes a replica panic, hang or spin; libFuzzer keeps any input
//! that panics, and `-timeout` catches one that spins. `PAXSIM_FUZZ_BUG`
//! has no say here: the target fuzzes the core as it ships.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    paxsim::scenarios::log::feed_peer_bytes(data);
});
