//! The same echo server on the runtimes a reader will use, one thread each: tokio's
//! current-thread runtime, smol's `LocalExecutor`, monoio on io_uring; and hyper's
//! HTTP/1.1 server on tokio. Each is the runtime's own idiom, as its documentation writes
//! it (feature `reference`; monoio on Linux only).

/// Why the reference rows cannot run, if they cannot.
pub fn unavailable() -> Option<&'static str> {
    if cfg!(feature = "reference") {
        None
    } else {
        Some("needs the reference runtimes: build with --features reference")
    }
}

/// Why the monoio row cannot run, if it cannot.
pub fn monoio_unavailable() -> Option<&'static str> {
    if cfg!(not(target_os = "linux")) {
        Some("monoio runs on io_uring here, which is Linux-only")
    } else {
        unavailable()
    }
}

#[cfg(feature = "reference")]
pub use run::{hyper_tokio, smol, tokio};

#[cfg(all(feature = "reference", target_os = "linux"))]
pub use run::monoio;

#[cfg(not(feature = "reference"))]
pub use absent::{hyper_tokio, smol, tokio};

#[cfg(not(all(feature = "reference", target_os = "linux")))]
pub use absent::monoio;

#[cfg(feature = "reference")]
mod run {
    use std::io;
    use std::net::SocketAddr;

    use crate::net::BUFFER;

    /// The echo server on tokio: `tokio::spawn` a task per connection.
    pub fn tokio(addr: SocketAddr, bound: &dyn Fn(SocketAddr)) -> io::Result<()> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()?;
        runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            bound(listener.local_addr()?);
            loop {
                let (mut stream, _peer) = listener.accept().await?;
                tokio::spawn(async move {
                    let mut buf = vec![0; BUFFER];
                    loop {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if stream.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        })
    }

    /// The echo server on smol: a `LocalExecutor` driven by `smol::block_on`.
    pub fn smol(addr: SocketAddr, bound: &dyn Fn(SocketAddr)) -> io::Result<()> {
        use smol::io::{AsyncReadExt, AsyncWriteExt};
        let executor = smol::LocalExecutor::new();
        smol::block_on(executor.run(async {
            let listener = smol::net::TcpListener::bind(addr).await?;
            bound(listener.local_addr()?);
            loop {
                let (mut stream, _peer) = listener.accept().await?;
                executor
                    .spawn(async move {
                        let mut buf = vec![0; BUFFER];
                        loop {
                            match stream.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => {
                                    if stream.write_all(&buf[..n]).await.is_err() {
                                        return;
                                    }
                                }
                            }
                        }
                    })
                    .detach();
            }
        }))
    }

    /// The echo server on monoio's io_uring driver: owned buffers, as in stage 4's.
    #[cfg(target_os = "linux")]
    pub fn monoio(addr: SocketAddr, bound: &dyn Fn(SocketAddr)) -> io::Result<()> {
        use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
        let mut runtime = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new().build()?;
        runtime.block_on(async {
            let listener = monoio::net::TcpListener::bind(addr)?;
            bound(listener.local_addr()?);
            loop {
                let (mut stream, _peer) = listener.accept().await?;
                monoio::spawn(async move {
                    let mut buf = Vec::with_capacity(BUFFER);
                    loop {
                        let (read, back) = stream.read(buf).await;
                        if !matches!(read, Ok(n) if n > 0) {
                            return;
                        }
                        let (written, back) = stream.write_all(back).await;
                        if written.is_err() {
                            return;
                        }
                        buf = back;
                        buf.clear();
                    }
                });
            }
        })
    }

    /// hyper's HTTP/1.1 server on tokio, through hyper-util's `TokioIo` and `TokioTimer`.
    pub fn hyper_tokio(addr: SocketAddr, bound: &dyn Fn(SocketAddr)) -> io::Result<()> {
        use hyper_util::rt::{TokioIo, TokioTimer};

        use crate::net::servers::{hello, service_fn};
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            bound(listener.local_addr()?);
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new()).auto_date_header(false);
            loop {
                let (stream, _peer) = listener.accept().await?;
                let connection = http.serve_connection(TokioIo::new(stream), service_fn(hello));
                tokio::spawn(async move {
                    let _ = connection.await; // a client that went away ends its connection
                });
            }
        })
    }
}

mod absent {
    #![allow(dead_code, reason = "which of these stand in depends on the build")]

    use std::io;
    use std::net::SocketAddr;

    fn refuse(why: Option<&'static str>) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            why.unwrap_or("unavailable"),
        ))
    }

    /// Not in this build: it says why.
    pub fn tokio(_addr: SocketAddr, _bound: &dyn Fn(SocketAddr)) -> io::Result<()> {
        refuse(super::unavailable())
    }

    /// Not in this build: it says why.
    pub fn smol(_addr: SocketAddr, _bound: &dyn Fn(SocketAddr)) -> io::Result<()> {
        refuse(super::unavailable())
    }

    /// Not in this build: it says why.
    pub fn monoio(_addr: SocketAddr, _bound: &dyn Fn(SocketAddr)) -> io::Result<()> {
        refuse(super::monoio_unavailable())
    }

    /// Not in this build: it says why.
    pub fn hyper_tokio(_addr: SocketAddr, _bound: &dyn Fn(SocketAddr)) -> io::Result<()> {
        refuse(super::unavailable())
    }
}

// Keeps the signatures of both builds in step.
const _: [crate::net::Serve; 4] = [tokio, smol, monoio, hyper_tokio];
