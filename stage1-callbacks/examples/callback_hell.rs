//! Callback hell (article 3.3), on stage 1's event loop: four dependent steps, each an
//! asynchronous operation that takes a callback.
//!
//! Over the client, nothing new in the machinery; the point is the shape of the code.
//! Handling one request means: parse it, look the user up in a store, ask another
//! service for their orders, format the reply. Each step can fail, each step waits
//! (simulated here with the loop's timers), and each next step can only be written
//! inside the previous one's callback. Five requests run concurrently on one thread;
//! two of them fail at different depths, and each failure needs its own branch.
//!
//! Run it: `cargo run -p stage1-callbacks --example callback_hell`.

use std::time::{Duration, Instant};

use stage1_callbacks::event_loop::EventLoop;

/// A parsed request: `GET /users/{id}/orders`.
struct Query {
    user_id: u32,
}

/// What the store knows about a user.
struct User {
    id: u32,
    name: String,
}

// ANCHOR: operations
/// Step 1: parse the request line (instantly, but through the loop like the others).
fn parse_request(
    event_loop: &mut EventLoop,
    raw: &str,
    callback: impl FnOnce(&mut EventLoop, Result<Query, String>) + 'static,
) {
    let parsed = raw
        .strip_prefix("GET /users/")
        .and_then(|rest| rest.strip_suffix("/orders"))
        .and_then(|id| id.parse().ok())
        .map(|user_id| Query { user_id })
        .ok_or_else(|| format!("cannot parse {raw:?}"));
    event_loop.call_later(Duration::ZERO, move |event_loop| {
        callback(event_loop, parsed)
    });
}

/// Step 2: look the user up in a store that takes 50 ms to answer.
fn query_store(
    event_loop: &mut EventLoop,
    user_id: u32,
    callback: impl FnOnce(&mut EventLoop, Result<User, String>) + 'static,
) {
    event_loop.call_later(Duration::from_millis(50), move |event_loop| {
        let user = match user_id {
            1 => Ok(User {
                id: 1,
                name: "ada".into(),
            }),
            2 => Ok(User {
                id: 2,
                name: "grace".into(),
            }),
            3 => Ok(User {
                id: 3,
                name: "edsger".into(),
            }),
            _ => Err(format!("no user {user_id}")),
        };
        callback(event_loop, user);
    });
}

/// Step 3: ask the orders service, which takes 80 ms, how many orders the user has.
fn call_orders_service(
    event_loop: &mut EventLoop,
    user_id: u32,
    callback: impl FnOnce(&mut EventLoop, Result<u32, String>) + 'static,
) {
    let orders = if user_id == 3 {
        Err("orders service: 503 unavailable".to_string())
    } else {
        Ok(user_id * 7)
    };
    event_loop.call_later(Duration::from_millis(80), move |event_loop| {
        callback(event_loop, orders)
    });
}

/// Step 4: format the reply (again through the loop, as a template engine might be).
fn format_reply(
    event_loop: &mut EventLoop,
    user: User,
    orders: u32,
    callback: impl FnOnce(&mut EventLoop, Result<String, String>) + 'static,
) {
    let reply = format!("200 OK: {} has {orders} orders", user.name);
    event_loop.call_later(Duration::ZERO, move |event_loop| {
        callback(event_loop, Ok(reply))
    });
}
// ANCHOR_END: operations

// ANCHOR: handle_request
/// The handler: four steps, each inside the callback of the one before, and an error
/// branch at every level. `done` is called exactly once, with the reply or the error.
fn handle_request(
    event_loop: &mut EventLoop,
    raw: &str,
    done: impl FnOnce(&mut EventLoop, Result<String, String>) + 'static,
) {
    parse_request(event_loop, raw, move |event_loop, parsed| match parsed {
        Err(error) => done(event_loop, Err(format!("400 bad request: {error}"))),
        Ok(query) => query_store(
            event_loop,
            query.user_id,
            move |event_loop, user| match user {
                Err(error) => done(event_loop, Err(format!("404 not found: {error}"))),
                Ok(user) => call_orders_service(event_loop, user.id, move |event_loop, orders| {
                    match orders {
                        Err(error) => done(event_loop, Err(format!("502 bad gateway: {error}"))),
                        Ok(orders) => {
                            format_reply(event_loop, user, orders, move |event_loop, reply| {
                                done(event_loop, reply) // at last
                            })
                        }
                    }
                }),
            },
        ),
    });
}
// ANCHOR_END: handle_request

fn main() -> std::process::ExitCode {
    let mut event_loop = match EventLoop::new() {
        Ok(event_loop) => event_loop,
        Err(e) => {
            eprintln!("error: cannot create the event loop: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let started = Instant::now();
    let requests = [
        "GET /users/1/orders",
        "GET /users/2/orders",
        "GET /users/3/orders", // the orders service fails
        "GET /users/9/orders", // no such user
        "DELETE /everything",  // does not parse
    ];
    for raw in requests {
        handle_request(&mut event_loop, raw, move |_, reply| {
            let at = started.elapsed().as_secs_f64();
            match reply {
                Ok(reply) => shared::say!("[{at:.3} s] {raw:<22} -> {reply}"),
                Err(error) => shared::say!("[{at:.3} s] {raw:<22} -> {error}"),
            }
        });
    }
    if let Err(e) = event_loop.run() {
        eprintln!("error: the event loop failed: {e}");
        return std::process::ExitCode::FAILURE;
    }
    // One after the other, the three that reach the orders service alone would take
    // 3 x (50 + 80) ms; on the loop, everything overlaps.
    shared::say!(
        "5 requests handled in {:.3} s, on one thread",
        started.elapsed().as_secs_f64()
    );
    std::process::ExitCode::SUCCESS
}
