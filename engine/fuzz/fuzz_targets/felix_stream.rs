//! An untrusted Felix stream, as `sluice run`'s session reads it: the
//! bytes split into reads at places the input chooses, frames cut out
//! (a small cap, so oversize frames are reached), each decoded as a
//! `felix.ToDataplane` and applied to a session model, which is then
//! converted to a desired state. Errors end the stream; nothing panics,
//! and every message that decodes encodes back to itself.
#![no_main]

use engine::sources::felix::{codec, to_state, FelixModel, FrameDecoder};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Some((&split, bytes)) = data.split_first() else {
        return;
    };
    let step = usize::from(split % 64) + 1;
    let mut dec = FrameDecoder::new(4096);
    let mut model = FelixModel::default();
    'read: for chunk in bytes.chunks(step) {
        dec.push(chunk);
        loop {
            let index = dec.frames();
            let frame = match dec.next_frame() {
                Ok(Some(f)) => f.to_vec(),
                Ok(None) => continue 'read,
                Err(_) => return,
            };
            let Ok(m) = codec::decode_to_dataplane(index, &frame) else {
                return;
            };
            let again = engine::sources::felix::proto::ToDataplane::decode(&*m.encode_to_vec());
            assert_eq!(again.as_ref(), Ok(&m));
            if let Some(p) = m.payload {
                if model.apply(p).is_err() {
                    return;
                }
            }
        }
    }
    let _ = dec.finish();
    let mut base = engine::state::NodeState::empty("fuzz");
    base.ports.push(engine::state::PortSpec {
        name: "up".into(),
        interface: Some("eth0".into()),
        queues: engine::state::QueueSel::All,
        mode: engine::state::XskMode::Auto,
        mac: None,
        addresses: vec![engine::wire::Cidr::parse("10.0.0.1/8").unwrap()],
        zone: 0,
    });
    let _ = to_state(&model, &base);
});
