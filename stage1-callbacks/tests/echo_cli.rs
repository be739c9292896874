//! The echo examples' command line: an address that does not parse or resolve is a usage
//! error (exit status 2, as clap's own are), named in the message.

use clap::Parser;
use stage1_callbacks::echo::EchoCli;

#[test]
fn a_bad_listen_address_is_a_usage_error() {
    for bad in [":::", "localhost:99999", "no-port"] {
        let error = EchoCli::try_parse_from(["echo_epoll", "--listen", bad]).unwrap_err();
        assert_eq!(error.exit_code(), 2, "{bad}: {error}");
        assert!(error.to_string().contains(bad), "{error}");
    }
    let cli = EchoCli::try_parse_from(["echo_epoll", "--listen", "127.0.0.1:7000"]).unwrap();
    assert_eq!(cli.listen.port(), 7000);
}
