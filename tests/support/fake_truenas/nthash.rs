//! The NT hash that TrueNAS shows as `smbhash`: MD4 of the UTF-16LE password, upper-case
//! hex. MD4 (RFC 1320) is written out here because no MD4 crate is a dependency; the self
//! tests check it against the well-known NT hash of "password".

pub(super) fn nt_hash(password: &str) -> String {
    let utf16le: Vec<u8> = password.encode_utf16().flat_map(u16::to_le_bytes).collect();
    hex::encode_upper(md4(&utf16le))
}

fn md4(input: &[u8]) -> [u8; 16] {
    let mut message = input.to_vec();
    let bit_len = u64::try_from(input.len())
        .expect("input fits in u64")
        .wrapping_mul(8);
    message.push(0x80);
    while message.len() % 64 != 56 {
        message.push(0);
    }
    message.extend_from_slice(&bit_len.to_le_bytes());

    let mut state: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];
    for block in message.chunks_exact(64) {
        let mut x = [0u32; 16];
        for (word, bytes) in x.iter_mut().zip(block.chunks_exact(4)) {
            *word = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        }
        let mut v = state;
        let f = |b: u32, c: u32, d: u32| (b & c) | (!b & d);
        let g = |b: u32, c: u32, d: u32| (b & c) | (b & d) | (c & d);
        let h = |b: u32, c: u32, d: u32| b ^ c ^ d;
        let order1: [usize; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
        let order2: [usize; 16] = [0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15];
        let order3: [usize; 16] = [0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15];
        round(&mut v, &x, &order1, [3, 7, 11, 19], 0, f);
        round(&mut v, &x, &order2, [3, 5, 9, 13], 0x5a82_7999, g);
        round(&mut v, &x, &order3, [3, 9, 11, 15], 0x6ed9_eba1, h);
        for (s, v) in state.iter_mut().zip(v) {
            *s = s.wrapping_add(v);
        }
    }

    let mut digest = [0u8; 16];
    for (out, word) in digest.chunks_exact_mut(4).zip(state) {
        out.copy_from_slice(&word.to_le_bytes());
    }
    digest
}

/// One MD4 round of 16 steps. Rotating (a, b, c, d) after each step gives the RFC's
/// `[abcd k s] [dabc k s] [cdab k s] [bcda k s]` pattern without writing it out.
fn round(
    v: &mut [u32; 4],
    x: &[u32; 16],
    order: &[usize; 16],
    shifts: [u32; 4],
    constant: u32,
    func: impl Fn(u32, u32, u32) -> u32,
) {
    for (step, &k) in order.iter().enumerate() {
        let [a, b, c, d] = *v;
        let t = a
            .wrapping_add(func(b, c, d))
            .wrapping_add(x[k])
            .wrapping_add(constant)
            .rotate_left(shifts[step % 4]);
        *v = [d, t, b, c];
    }
}
