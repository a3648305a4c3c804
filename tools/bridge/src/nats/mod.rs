// SPDX-License-Identifier: GPL-2.0
//! NATS, spoken directly over TCP: the protocol ([`proto`]), the `INFO` it sends ([`json`]),
//! server addresses ([`url`]) and the connection thread ([`conn`]).

pub mod conn;
pub mod json;
pub mod proto;
pub mod url;
