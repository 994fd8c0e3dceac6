//! A SOCKS proxy on 127.0.0.1 for the tests: SOCKS4, SOCKS4a and SOCKS5 (no authentication)
//! CONNECT, then a relay both ways to the target.
//!
//! It records each CONNECT before it answers, so once the client has its answer the test can
//! check that the request went through the proxy, and whether the client sent an IP address
//! (`socks4://`, `socks5://`: resolved locally) or the host name (`socks4a://`, `socks5h://`:
//! resolved by the proxy). A target that refuses is reported to the client as the proxy's
//! refusal (SOCKS5 reply 5, SOCKS4 reply 91), as a real proxy does.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddrV4, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

/// One CONNECT the proxy was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// 4 or 5.
    pub version: u8,
    pub target: Target,
}

/// The address a CONNECT named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An IPv4 address: the client resolved the host itself.
    Ip(SocketAddrV4),
    /// A host name for the proxy to resolve (SOCKS4a, SOCKS5 address type 3).
    Domain(String, u16),
}

pub struct SocksProxy {
    port: u16,
    connects: Arc<Mutex<Vec<Connect>>>,
}

impl SocksProxy {
    /// Starts a proxy that serves any number of connections until the test process ends.
    pub fn start() -> SocksProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().unwrap().port();
        let connects = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&connects);
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let record = Arc::clone(&record);
                thread::spawn(move || {
                    let _ = serve(client, &record);
                });
            }
        });
        SocksProxy { port, connects }
    }

    /// The proxy's URL with this scheme: `socks5h://127.0.0.1:PORT`.
    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The CONNECTs so far, in order.
    pub fn connects(&self) -> Vec<Connect> {
        self.connects.lock().unwrap().clone()
    }
}

fn serve(mut client: TcpStream, record: &Mutex<Vec<Connect>>) -> io::Result<()> {
    let mut version = [0];
    client.read_exact(&mut version)?;
    let connect = match version[0] {
        4 => socks4_request(&mut client)?,
        5 => socks5_request(&mut client)?,
        _ => return Ok(()),
    };
    record.lock().unwrap().push(connect.clone());
    let upstream = match &connect.target {
        Target::Ip(address) => TcpStream::connect(address),
        Target::Domain(host, port) => TcpStream::connect((host.as_str(), *port)),
    };
    let granted = upstream.is_ok();
    // The bound address in the reply is not used for CONNECT: zeros.
    let reply: &[u8] = match (connect.version, granted) {
        (4, true) => &[0, 90, 0, 0, 0, 0, 0, 0],
        (4, false) => &[0, 91, 0, 0, 0, 0, 0, 0],
        (_, true) => &[5, 0, 0, 1, 0, 0, 0, 0, 0, 0],
        (_, false) => &[5, 5, 0, 1, 0, 0, 0, 0, 0, 0],
    };
    client.write_all(reply)?;
    let Ok(upstream) = upstream else {
        return Ok(());
    };
    relay(client, upstream)
}

/// After the version byte: command, port, IPv4 address, user id, and for SOCKS4a (address
/// 0.0.0.x, x > 0) the host name.
fn socks4_request(client: &mut TcpStream) -> io::Result<Connect> {
    let mut head = [0; 7];
    client.read_exact(&mut head)?;
    let port = u16::from_be_bytes([head[1], head[2]]);
    let ip = Ipv4Addr::new(head[3], head[4], head[5], head[6]);
    read_nul_terminated(client)?; // user id
    let target = if ip.octets()[..3] == [0, 0, 0] && ip.octets()[3] != 0 {
        Target::Domain(read_nul_terminated(client)?, port)
    } else {
        Target::Ip(SocketAddrV4::new(ip, port))
    };
    Ok(Connect { version: 4, target })
}

fn read_nul_terminated(client: &mut TcpStream) -> io::Result<String> {
    let mut bytes = Vec::new();
    let mut byte = [0];
    loop {
        client.read_exact(&mut byte)?;
        if byte[0] == 0 {
            return Ok(String::from_utf8_lossy(&bytes).into_owned());
        }
        bytes.push(byte[0]);
    }
}

/// After the version byte: the offered methods (we choose "no authentication"), then the
/// CONNECT request with an IPv4 address or a host name.
fn socks5_request(client: &mut TcpStream) -> io::Result<Connect> {
    let mut count = [0];
    client.read_exact(&mut count)?;
    let mut methods = vec![0; usize::from(count[0])];
    client.read_exact(&mut methods)?;
    if !methods.contains(&0) {
        client.write_all(&[5, 0xff])?;
        return Err(io::Error::other("the client offers no method we take"));
    }
    client.write_all(&[5, 0])?;
    let mut head = [0; 4];
    client.read_exact(&mut head)?;
    let target = match head[3] {
        1 => {
            let mut ip = [0; 4];
            client.read_exact(&mut ip)?;
            Target::Ip(SocketAddrV4::new(Ipv4Addr::from(ip), read_port(client)?))
        }
        3 => {
            let mut len = [0];
            client.read_exact(&mut len)?;
            let mut name = vec![0; usize::from(len[0])];
            client.read_exact(&mut name)?;
            let name = String::from_utf8_lossy(&name).into_owned();
            Target::Domain(name, read_port(client)?)
        }
        _ => {
            return Err(io::Error::other(
                "an address type the test proxy does not take",
            ));
        }
    };
    Ok(Connect { version: 5, target })
}

fn read_port(client: &mut TcpStream) -> io::Result<u16> {
    let mut port = [0; 2];
    client.read_exact(&mut port)?;
    Ok(u16::from_be_bytes(port))
}

/// Copies both ways until each side has closed its half.
fn relay(client: TcpStream, upstream: TcpStream) -> io::Result<()> {
    let (mut client_read, mut upstream_write) = (client.try_clone()?, upstream.try_clone()?);
    let upward = thread::spawn(move || {
        let _ = io::copy(&mut client_read, &mut upstream_write);
        let _ = upstream_write.shutdown(Shutdown::Write);
    });
    let (mut upstream_read, mut client_write) = (upstream, client);
    let _ = io::copy(&mut upstream_read, &mut client_write);
    let _ = client_write.shutdown(Shutdown::Write);
    let _ = upward.join();
    Ok(())
}
