//! The README's Python client: it is the same as `tools/examples/kchat.py`, and it speaks
//! kchat's frames.

use std::{
    io::{Read, Write},
    net::TcpListener,
    process::{Command, Stdio},
    time::Duration,
};

use kchat_proto::{encode, Decoder};

fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The README shows exactly the file in tools/examples.
#[test]
fn readme_matches_the_example_file() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let start = readme
        .find("<!-- kchat.py begins -->\n```python\n")
        .expect("begin marker");
    let body = &readme[start..];
    let body = &body[body.find("```python\n").unwrap() + "```python\n".len()..];
    let body = &body[..body
        .find("```\n<!-- kchat.py ends -->")
        .expect("end marker")];
    let file = std::fs::read_to_string(root().join("tools/examples/kchat.py")).unwrap();
    assert_eq!(body, file);
}

/// - each input line goes out as one frame (u32 little-endian length, then the bytes);
/// - each frame received is printed as a line;
/// - when the server closes the connection the client says so and exits 1.
#[test]
fn python_client_speaks_frames() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let mut child = Command::new("python3")
        .arg(root().join("tools/examples/kchat.py"))
        .args(["127.0.0.1", &port])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let (mut server, _) = listener.accept().unwrap();
    server.write_all(&encode(b"bob: hi python")).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all("hello from python\nsecond \u{e9}\n".as_bytes())
        .unwrap();
    let mut d = Decoder::new(1024);
    let mut frames = Vec::new();
    server
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    while frames.len() < 2 {
        let spare = d.spare(1024);
        let n = server.read(spare).unwrap();
        assert!(n > 0, "python client closed early");
        d.filled(n);
        while let Some(f) = d.next_frame().unwrap() {
            frames.push(f.to_vec());
        }
    }
    assert_eq!(
        frames,
        vec![
            b"hello from python".to_vec(),
            "second \u{e9}".as_bytes().to_vec()
        ]
    );
    // The server goes away while the client still has input open: it says so and exits 1.
    drop(server);
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "bob: hi python\n* disconnected\n"
    );
}
