//! How big is a request in flight? The size of `make_tcp_request`'s future, as the
//! compiler writes it and as `desugared.rs` writes it by hand.
//!
//! ```text
//! cargo run --release -p stage4-async-await --example future_sizes
//! ```
//!
//! A future holds only the variables alive across an `.await`: the stream, the decoder,
//! and (in the compiler's) the future of the `.await` it is at. No read buffer: readiness
//! needs one only for the length of a `read(2)`, on the stack of the poll that reads.
//! Stage 3 gave every request a stack of 256 KiB instead.

use std::net::{Ipv4Addr, SocketAddr};

use stage4_async_await::{client, desugared};

fn main() {
    // Creating a future runs none of its code: no socket is opened here.
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 1));
    let by_compiler = std::mem::size_of_val(&client::make_tcp_request(addr, 0));
    let by_hand = std::mem::size_of_val(&desugared::make_tcp_request(addr, 0));
    shared::say!("make_tcp_request's future, written by the compiler: {by_compiler} bytes");
    shared::say!("the same state machine, written by hand:           {by_hand} bytes");
}
