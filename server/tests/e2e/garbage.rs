//! Bad input on one connection never hurts another: random bytes, truncated
//! msgpack, wrong types, framing violations and a 10 MiB frame, while a
//! bystander connection keeps answering pings.

use parsec_protocol::value::{self, Value};

use crate::common::*;

async fn ping_ok(ws: &mut WsClient, text: &str) {
    let rep = ws.req("ping", vec![("ping", Value::from(text))]).await;
    assert_eq!(field(&rep, "pong").as_str(), Some(text), "{rep:?}");
}

fn invalid_msg_format() -> Vec<(Value, Value)> {
    value::unpack_map(&value::pack(&parsec_protocol::cmds::invalid_msg_format())).expect("msgpack map")
}

#[actix_web::test]
async fn malformed_messages_close_only_their_connection() {
    let server = start_server().await;
    let org = new_org(&server).await;
    let mut bystander = login(&server, &org).await;
    ping_ok(&mut bystander, "before").await;

    let mut bin_over = vec![
        0x82, 0xa3, b'c', b'm', b'd', 0xa4, b'p', b'i', b'n', b'g', 0xa4, b'd', b'a', b't', b'a', 0xc6,
    ];
    bin_over.extend_from_slice(&(1024u32 * 1024 + 1).to_be_bytes());
    bin_over.extend(std::iter::repeat_n(0u8, 1024 * 1024 + 1));
    let random: Vec<u8> = (0..512).map(|_| rand::random::<u8>()).collect();
    let truncated = {
        let mut t = value::pack(&value::map([
            ("cmd", Value::from("ping")),
            ("ping", Value::from("x".repeat(50))),
        ]));
        t.truncate(t.len() - 10);
        t
    };
    let payloads: Vec<Vec<u8>> = vec![
        b"\xc1\xff\x00 this is not msgpack".to_vec(),
        truncated,
        vec![0x93, 1, 2, 3],
        vec![0x2a],
        bin_over,
        [random, vec![0xc1]].concat(),
    ];
    for (i, payload) in payloads.into_iter().enumerate() {
        eprintln!("malformed payload #{i}");
        let mut ws = login(&server, &org).await;
        ws.send(&payload).await;
        assert_eq!(ws.recv().await, invalid_msg_format());
        assert_eq!(ws.recv_event().await, WsEvent::Close(Some(1000)));
        ping_ok(&mut bystander, "during").await;
    }

    eprintln!("text frame");
    // A text frame.
    let mut ws = login(&server, &org).await;
    ws.send_frame(0x1, b"{\"cmd\": \"ping\"}", true, true, 0).await;
    assert_eq!(ws.recv().await, invalid_msg_format());
    assert_eq!(ws.recv_event().await, WsEvent::Close(Some(1000)));

    // Framing violations: a close frame, nothing else.
    let ping = value::pack(&value::map([
        ("cmd", Value::from("ping")),
        ("ping", Value::from("frame")),
    ]));
    eprintln!("violations");
    for (opcode, masked, rsv) in [(0x2, false, 0), (0x3, true, 0), (0x2, true, 0b100)] {
        let mut ws = login(&server, &org).await;
        ws.send_frame(opcode, &ping, true, masked, rsv).await;
        assert!(matches!(ws.recv_event().await, WsEvent::Close(_) | WsEvent::Eof));
    }

    eprintln!("10 MiB");
    // A 10 MiB frame.
    let mut ws = login(&server, &org).await;
    let huge = vec![0u8; 10 * 1024 * 1024];
    let raw = frame(0x2, &huge, true, true, 0, None);
    let _ = tokio::io::AsyncWriteExt::write_all(&mut ws.stream, &raw).await;
    assert!(matches!(
        ws.recv_event().await,
        WsEvent::Close(_) | WsEvent::Eof | WsEvent::Binary(_)
    ));

    eprintln!("absurd");
    // An absurd declared length.
    let mut ws = login(&server, &org).await;
    let raw = frame(0x2, b"abc", true, true, 0, Some(1 << 62));
    let _ = tokio::io::AsyncWriteExt::write_all(&mut ws.stream, &raw).await;
    assert!(matches!(
        ws.recv_event().await,
        WsEvent::Close(_) | WsEvent::Eof | WsEvent::Binary(_)
    ));

    ping_ok(&mut bystander, "after").await;
    let mut fresh = login(&server, &org).await;
    ping_ok(&mut fresh, "new connection").await;
}

#[actix_web::test]
async fn wrong_types_and_unknown_commands_keep_the_connection() {
    let server = start_server().await;
    let org = new_org(&server).await;
    let mut ws = login(&server, &org).await;
    for req in [
        value::map([("cmd", Value::from("no_such_command"))]),
        value::map([("cmd", Value::from(42))]),
        value::map([("foo", Value::from("bar"))]),
        value::map([("cmd", Value::from(""))]),
        value::map([("cmd", Value::from("invite_info"))]),
        value::map([("cmd", Value::from("organization_bootstrap"))]),
    ] {
        ws.send_value(&req).await;
        let rep = ws.recv().await;
        assert_eq!(status(&rep), "unknown_command");
        assert_eq!(field(&rep, "reason").as_str(), Some("Unknown command"));
    }
    for (cmd, fields) in [
        ("ping", vec![("ping", Value::from(42))]),
        ("ping", vec![]),
        ("user_get", vec![("user_id", Value::from("!!invalid user id!!"))]),
        ("realm_status", vec![("realm_id", Value::from(12))]),
        ("block_read", vec![("block_id", Value::Nil)]),
    ] {
        let rep = ws.req(cmd, fields).await;
        assert_eq!(status(&rep), "bad_message", "{cmd}");
        assert_eq!(field(&rep, "reason").as_str(), Some("Invalid message."));
        assert!(matches!(field(&rep, "errors"), Value::Map(_)));
    }
    let rep = ws
        .req(
            "ping",
            vec![
                ("ping", Value::from("extra")),
                ("unexpected_field", Value::Boolean(true)),
            ],
        )
        .await;
    assert_eq!(field(&rep, "pong").as_str(), Some("extra"));

    // Pipelined requests are answered in order; a websocket ping is answered.
    for i in 0..5 {
        ws.send_value(&value::map([
            ("cmd", Value::from("ping")),
            ("ping", Value::from(format!("p{i}"))),
        ]))
        .await;
    }
    for i in 0..5 {
        assert_eq!(field(&ws.recv().await, "pong").as_str(), Some(format!("p{i}").as_str()));
    }
    ws.send_frame(0x9, b"hb", true, true, 0).await;
    assert_eq!(ws.recv_event().await, WsEvent::Pong(b"hb".to_vec()));

    // A fragmented message with a ping frame in the middle.
    let data = value::pack(&value::map([
        ("cmd", Value::from("ping")),
        ("ping", Value::from("fragmented")),
    ]));
    ws.send_frame(0x2, &data[..4], false, true, 0).await;
    ws.send_frame(0x9, b"mid", true, true, 0).await;
    ws.send_frame(0x0, &data[4..], true, true, 0).await;
    assert_eq!(ws.recv_event().await, WsEvent::Pong(b"mid".to_vec()));
    assert_eq!(field(&ws.recv().await, "pong").as_str(), Some("fragmented"));
}

#[actix_web::test]
async fn events_listen_is_abandoned_by_the_next_request() {
    let server = start_server().await;
    let org = new_org(&server).await;
    let mut listener = login(&server, &org).await;
    assert_eq!(status(&listener.req("events_subscribe", vec![]).await), "ok");
    assert_eq!(
        status(
            &listener
                .req("events_listen", vec![("wait", Value::Boolean(false))])
                .await
        ),
        "no_events"
    );
    listener
        .send_value(&value::map([
            ("cmd", Value::from("events_listen")),
            ("wait", Value::Boolean(true)),
        ]))
        .await;
    // A websocket ping is answered while the listen waits.
    listener.send_frame(0x9, b"hb", true, true, 0).await;
    assert_eq!(listener.recv_event().await, WsEvent::Pong(b"hb".to_vec()));
    // The next request abandons the listen: only its own reply comes.
    ping_ok(&mut listener, "next").await;

    // A ping from another connection of the same device is not an event for
    // this device (events skip their author device).
    let mut other = login(&server, &org).await;
    ping_ok(&mut other, "hello listener").await;
    ping_ok(&mut listener, "sync").await;
    assert_eq!(
        status(
            &listener
                .req("events_listen", vec![("wait", Value::Boolean(false))])
                .await
        ),
        "no_events"
    );
}
