//! For split-invariance tests: an input cut into pieces at proptest-chosen points.

/// `input` cut at `cuts` (any values, taken modulo `input.len() + 1`, in sorted order): the
/// pieces in order, some possibly empty, which together are `input`.
pub(crate) fn cut_at<'a>(input: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    points.sort_unstable();
    let mut pieces = Vec::with_capacity(points.len() + 1);
    let mut last = 0;
    for p in points {
        pieces.push(&input[last..p]);
        last = p;
    }
    pieces.push(&input[last..]);
    pieces
}

#[test]
fn the_pieces_are_the_input_in_order() {
    let input = b"0123456789";
    // 25 wraps to 25 % 11 = 3.
    let pieces = cut_at(input, &[7, 3, 25, 3]);
    assert_eq!(pieces, [&b"012"[..], b"", b"", b"3456", b"789"]);
    assert_eq!(pieces.concat(), input);
    assert_eq!(cut_at(input, &[]), [&input[..]]);
}
