//! Network coordinates: Vivaldi, as HashiCorp Serf computes them.
//!
//! Every node places itself in a small Euclidean space plus a "height" (the
//! access link every path to it shares), so that the distance between two
//! nodes' coordinates estimates the round trip between them. A node moves its
//! own coordinate a little each time it measures a round trip to a member
//! whose coordinate it holds: towards it if the estimate was too long, away if
//! too short, by a step weighted by how confident each side is ([`Vivaldi`]).
//! The refinements are Serf's (`coordinate/client.go`): a moving-median
//! latency filter per member, an adjustment term averaged over a window of
//! residuals, a height floor, and a weak gravity towards the origin. The
//! defaults are Serf's ([`CoordinateConfig::serf`]); ALGORITHM.md section 15
//! has the maths, the bytes, and the measured accuracy.
//!
//! Pure like the rest of the crate: no clock (the round trip is an argument),
//! no rng (Serf draws a random direction when two coordinates coincide; here
//! the direction is a hash of this node's seed and its update count), and no
//! hashed maps.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::NodeId;
use crate::hash::mix64;

/// Tuning of the coordinate system. Every member of a mesh must use the same
/// `dimensionality` (coordinates of another dimensionality are refused and
/// counted); the rest may differ between nodes.
#[derive(Clone, Debug, PartialEq)]
pub struct CoordinateConfig {
    /// Euclidean dimensions (Serf: 8). At least 1, at most
    /// [`MAX_DIMENSIONS`].
    pub dimensionality: usize,
    /// Error estimate of a node that has measured nothing, and the ceiling
    /// of any error estimate (Serf's `VivaldiErrorMax`: 1.5; dimensionless,
    /// positive, at most [`PackedCoordinate::MAX_ERROR`]).
    pub error_max: f64,
    /// How far one sample may move the error estimate (Vivaldi's `ce`,
    /// Serf: 0.25; in (0, 1]).
    pub ce: f64,
    /// How far one sample may move the coordinate (Vivaldi's `cc`, Serf:
    /// 0.25; in (0, 1]).
    pub cc: f64,
    /// Residuals averaged into the adjustment term (Serf: 20); 0 turns the
    /// adjustment off.
    pub adjustment_window: usize,
    /// Smallest height, in seconds (Serf: 10 µs; positive).
    pub height_min: f64,
    /// Samples per member in the moving-median latency filter (Serf: 3; at
    /// least 1, at most [`MAX_LATENCY_FILTER`]).
    pub latency_filter: usize,
    /// How weakly gravity pulls a coordinate back to the origin, in seconds
    /// (Serf: 150; positive): the pull is `(distance / rho)²`.
    pub gravity_rho: f64,
    /// Shoal's, not Serf's: a node puts its coordinate in every ack it sends
    /// until it has taken this many samples itself (its coordinate is still
    /// young and moving, and its peers are probably young too; Serf: every
    /// ack, always).
    pub warmup_samples: u32,
    /// Shoal's, not Serf's: after the warm-up, a node puts its coordinate in
    /// one ack of this many (1: every ack, as Serf does). A settled
    /// coordinate moves little, and the bytes are the point: ALGORITHM.md
    /// section 15. At least 1.
    pub share_one_in: u32,
}

/// Most dimensions a coordinate may have (more are refused on the wire).
pub const MAX_DIMENSIONS: usize = 16;
/// Most samples the latency filter may keep per member.
pub const MAX_LATENCY_FILTER: usize = 16;
/// Round trips longer than this are not samples (Serf's bound).
pub const MAX_RTT: Duration = Duration::from_secs(10);
/// Largest magnitude of any length in a valid coordinate, in seconds: a
/// coordinate component beyond it says nothing about a network (no round
/// trip is that long), and the packed form cannot carry it.
pub const MAX_COORDINATE_SECONDS: f64 = 16.0;
/// Serf's threshold below which two coordinates are on top of each other.
const ZERO_THRESHOLD: f64 = 1.0e-6;

/// A coordinate parameter is out of range. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("coordinate config field `{field}` is out of range: {expected}")]
pub struct CoordinateConfigError {
    /// The field.
    pub field: &'static str,
    /// Its range.
    pub expected: &'static str,
}

impl CoordinateConfig {
    /// Serf's `DefaultConfig()`, and Serf's sharing: the coordinate in every
    /// ack.
    pub fn serf() -> CoordinateConfig {
        CoordinateConfig {
            dimensionality: 8,
            error_max: 1.5,
            ce: 0.25,
            cc: 0.25,
            adjustment_window: 20,
            height_min: 10.0e-6,
            latency_filter: 3,
            gravity_rho: 150.0,
            warmup_samples: 0,
            share_one_in: 1,
        }
    }

    /// Shoal's default: Serf's algorithm, with a larger step (`cc` 0.75
    /// rather than 0.25) and no adjustment term, and the coordinate in every
    /// ack only while young (the first 120 samples, about two minutes), then
    /// in one ack of 5. Each node takes one sample per protocol period, so
    /// convergence is sample-starved: on the sites topology at N = 500,
    /// Serf's parameters need about 285 s to bring the p95 relative error
    /// under 0.5, these about 100 s; the adjustment term, an average of
    /// residuals dominated by long paths, is what kept short (same-site)
    /// estimates off. ALGORITHM.md section 15 has the numbers.
    pub fn shoal() -> CoordinateConfig {
        CoordinateConfig {
            cc: 0.75,
            adjustment_window: 0,
            warmup_samples: 120,
            share_one_in: 5,
            ..CoordinateConfig::serf()
        }
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<(), CoordinateConfigError> {
        let fail = |field, expected| Err(CoordinateConfigError { field, expected });
        if !(1..=MAX_DIMENSIONS).contains(&self.dimensionality) {
            return fail("dimensionality", "1 to 16");
        }
        if !(self.error_max > 0.0 && self.error_max <= PackedCoordinate::MAX_ERROR) {
            return fail("error_max", "above 0, at most 2.55");
        }
        if !(self.ce > 0.0 && self.ce <= 1.0) {
            return fail("ce", "above 0, at most 1");
        }
        if !(self.cc > 0.0 && self.cc <= 1.0) {
            return fail("cc", "above 0, at most 1");
        }
        if !(self.height_min > 0.0 && self.height_min < 1.0) {
            return fail("height_min", "above 0 s, below 1 s");
        }
        if !(1..=MAX_LATENCY_FILTER).contains(&self.latency_filter) {
            return fail("latency_filter", "1 to 16");
        }
        if !(self.gravity_rho.is_finite() && self.gravity_rho > 0.0) {
            return fail("gravity_rho", "a positive number of seconds");
        }
        if self.adjustment_window > 1_024 {
            return fail("adjustment_window", "0 to 1024");
        }
        if self.share_one_in == 0 {
            return fail("share_one_in", "at least 1");
        }
        Ok(())
    }
}

// `Config` is `Eq`; a validated coordinate config holds no NaN, so equality
// is reflexive on every config the protocol runs with.
impl Eq for CoordinateConfig {}

impl Default for CoordinateConfig {
    fn default() -> CoordinateConfig {
        CoordinateConfig::shoal()
    }
}

/// A network coordinate. Lengths are in seconds, as in Serf.
#[derive(Clone, Debug, PartialEq)]
pub struct Coordinate {
    /// The Euclidean part.
    pub vec: Vec<f64>,
    /// Confidence: the node's running estimate of its relative error
    /// (dimensionless; smaller is surer).
    pub error: f64,
    /// Added to every distance from this node: the mean residual the
    /// Euclidean model leaves (seconds, may be negative).
    pub adjustment: f64,
    /// The part of every round trip to this node that no direction explains
    /// (its access link), in seconds, at least the configured minimum.
    pub height: f64,
}

impl Coordinate {
    /// Where a node starts: the origin, with the largest error.
    pub fn origin(config: &CoordinateConfig) -> Coordinate {
        Coordinate {
            vec: vec![0.0; config.dimensionality],
            error: config.error_max,
            adjustment: 0.0,
            height: config.height_min,
        }
    }

    /// Every number finite and within [`MAX_COORDINATE_SECONDS`], the error
    /// and the height not negative, and at most [`MAX_DIMENSIONS`]
    /// dimensions. Serf checks only finiteness; the bound is Shoal's, so
    /// that what a node uses it can also send.
    pub fn is_valid(&self) -> bool {
        let length = |x: f64| x.is_finite() && x.abs() <= MAX_COORDINATE_SECONDS;
        !self.vec.is_empty()
            && self.vec.len() <= MAX_DIMENSIONS
            && self.vec.iter().all(|x| length(*x))
            && length(self.adjustment)
            && length(self.height)
            && self.height >= 0.0
            && self.error.is_finite()
            && self.error >= 0.0
    }

    /// Distance without the adjustment terms, in seconds (dimensions must
    /// match).
    fn raw_distance_to(&self, other: &Coordinate) -> f64 {
        debug_assert_eq!(self.vec.len(), other.vec.len(), "dimensions checked by the caller");
        magnitude(self.vec.iter().zip(&other.vec).map(|(a, b)| a - b)) + self.height + other.height
    }

    /// Serf's `DistanceTo`, in seconds: the raw distance plus both
    /// adjustments, unless that would not be positive.
    fn distance_seconds(&self, other: &Coordinate) -> f64 {
        let raw = self.raw_distance_to(other);
        let adjusted = raw + self.adjustment + other.adjustment;
        if adjusted > 0.0 { adjusted } else { raw }
    }

    /// Moves this coordinate by `force` seconds along the line from `other`
    /// (away when positive), and the height in proportion. `tie` picks the
    /// direction when the two coincide.
    fn apply_force(&mut self, config: &CoordinateConfig, force: f64, other: &Coordinate, tie: u64) {
        let (unit, mag) = unit_vector_at(&self.vec, &other.vec, tie);
        for (x, u) in self.vec.iter_mut().zip(&unit) {
            *x += u * force;
        }
        if mag > ZERO_THRESHOLD {
            self.height = ((self.height + other.height) * force / mag + self.height).max(config.height_min);
        }
    }
}

/// The round trip two coordinates predict, or `None` if their
/// dimensionalities differ or either is not valid.
pub fn estimate_rtt(a: &Coordinate, b: &Coordinate) -> Option<Duration> {
    if a.vec.len() != b.vec.len() || !a.is_valid() || !b.is_valid() {
        return None;
    }
    Some(Duration::from_secs_f64(a.distance_seconds(b).clamp(0.0, MAX_COORDINATE_SECONDS * 4.0)))
}

fn magnitude(components: impl Iterator<Item = f64>) -> f64 {
    components.map(|x| x * x).sum::<f64>().sqrt()
}

/// The unit vector pointing at `from` away from `to`, and the distance
/// between them. When they coincide, a direction drawn from `tie` (Serf draws
/// it from the global rng).
fn unit_vector_at(from: &[f64], to: &[f64], tie: u64) -> (Vec<f64>, f64) {
    let diff: Vec<f64> = from.iter().zip(to).map(|(a, b)| a - b).collect();
    let mag = magnitude(diff.iter().copied());
    if mag > ZERO_THRESHOLD {
        return (diff.iter().map(|x| x / mag).collect(), mag);
    }
    #[allow(clippy::cast_precision_loss)] // a uniform draw in [0, 1)
    let random: Vec<f64> =
        (0..from.len()).map(|i| (mix64(tie ^ mix64(i as u64)) >> 11) as f64 / (1u64 << 53) as f64 - 0.5).collect();
    let random_mag = magnitude(random.iter().copied());
    if random_mag > ZERO_THRESHOLD {
        return (random.iter().map(|x| x / random_mag).collect(), 0.0);
    }
    let mut first = vec![0.0; from.len()];
    first[0] = 1.0;
    (first, 0.0)
}

/// Why a sample was not used. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SampleError {
    /// The other coordinate has another dimensionality, or is not valid.
    #[error("the member's coordinate is not valid or of another dimensionality")]
    BadCoordinate,
    /// The round trip is longer than [`MAX_RTT`].
    #[error("round trip {0:?} is longer than 10 s")]
    RttOutOfRange(Duration),
}

/// One node's coordinate and what updates it: Serf's `coordinate.Client`.
#[derive(Clone, Debug)]
pub struct Vivaldi {
    config: CoordinateConfig,
    coordinate: Coordinate,
    origin: Coordinate,
    /// The last `adjustment_window` residuals (rtt − raw distance), a ring.
    adjustment_samples: Vec<f64>,
    adjustment_index: usize,
    /// The last `latency_filter` round trips to each member, oldest first.
    latency_samples: BTreeMap<NodeId, Vec<f64>>,
    /// Picks the direction when two coordinates coincide.
    seed: u64,
    samples: u64,
    resets: u64,
}

impl Vivaldi {
    /// A node at the origin. `seed` picks the directions it moves in when
    /// it coincides with another coordinate (every node starts at the
    /// origin, so its first samples all need one): give each node its own.
    pub fn new(config: CoordinateConfig, seed: u64) -> Vivaldi {
        let origin = Coordinate::origin(&config);
        Vivaldi {
            coordinate: origin.clone(),
            adjustment_samples: vec![0.0; config.adjustment_window],
            adjustment_index: 0,
            latency_samples: BTreeMap::new(),
            origin,
            config,
            seed,
            samples: 0,
            resets: 0,
        }
    }

    /// The current coordinate.
    pub fn coordinate(&self) -> &Coordinate {
        &self.coordinate
    }

    /// The config it runs with.
    pub fn config(&self) -> &CoordinateConfig {
        &self.config
    }

    /// Samples taken.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// Times the coordinate went invalid and was put back at the origin.
    pub fn resets(&self) -> u64 {
        self.resets
    }

    /// Forgets the latency samples of `id` (a member gone for good).
    pub fn forget(&mut self, id: NodeId) {
        self.latency_samples.remove(&id);
    }

    /// A round trip `rtt` to member `id`, whose coordinate is `other`: Serf's
    /// `Client.Update`. Refused (and nothing changes) if `other` is not
    /// valid or not of our dimensionality, or `rtt` is over [`MAX_RTT`].
    pub fn observe(&mut self, id: NodeId, other: &Coordinate, rtt: Duration) -> Result<(), SampleError> {
        if other.vec.len() != self.config.dimensionality || !other.is_valid() {
            return Err(SampleError::BadCoordinate);
        }
        if rtt > MAX_RTT {
            return Err(SampleError::RttOutOfRange(rtt));
        }
        let rtt = self.latency_filter(id, rtt.as_secs_f64());
        self.samples += 1;
        self.update_vivaldi(other, rtt);
        self.update_adjustment(other, rtt);
        self.update_gravity();
        if !self.coordinate.is_valid() {
            self.resets += 1;
            self.coordinate = Coordinate::origin(&self.config);
        }
        Ok(())
    }

    /// The median of the member's last few round trips, this one included.
    fn latency_filter(&mut self, id: NodeId, rtt: f64) -> f64 {
        let samples = self.latency_samples.entry(id).or_default();
        samples.push(rtt);
        if samples.len() > self.config.latency_filter {
            samples.remove(0);
        }
        let mut sorted = samples.clone();
        sorted.sort_by(f64::total_cmp);
        sorted[sorted.len() / 2]
    }

    fn update_vivaldi(&mut self, other: &Coordinate, rtt: f64) {
        let rtt = rtt.max(ZERO_THRESHOLD);
        let dist = self.coordinate.distance_seconds(other);
        let wrongness = (dist - rtt).abs() / rtt;
        let total_error = (self.coordinate.error + other.error).max(ZERO_THRESHOLD);
        let weight = self.coordinate.error / total_error;
        let ce = self.config.ce * weight;
        self.coordinate.error = (ce * wrongness + self.coordinate.error * (1.0 - ce)).min(self.config.error_max);
        let force = self.config.cc * weight * (rtt - dist);
        let tie = mix64(self.seed ^ self.samples);
        self.coordinate.apply_force(&self.config, force, other, tie);
    }

    fn update_adjustment(&mut self, other: &Coordinate, rtt: f64) {
        let window = self.adjustment_samples.len();
        if window == 0 {
            return;
        }
        // The adjustments themselves do not enter the residual.
        self.adjustment_samples[self.adjustment_index] = rtt - self.coordinate.raw_distance_to(other);
        self.adjustment_index = (self.adjustment_index + 1) % window;
        #[allow(clippy::cast_precision_loss)] // at most 1,024
        let window = window as f64;
        self.coordinate.adjustment = self.adjustment_samples.iter().sum::<f64>() / (2.0 * window);
    }

    fn update_gravity(&mut self) {
        let dist = self.origin.distance_seconds(&self.coordinate);
        let force = -(dist / self.config.gravity_rho).powi(2);
        let tie = mix64(!self.seed ^ self.samples);
        let origin = &self.origin;
        self.coordinate.apply_force(&self.config, force, origin, tie);
    }
}

/// A coordinate as it travels (23 bytes at 8 dimensions): every length in
/// fixed point, in units of 2^-`scale` seconds, with one scale for the whole
/// coordinate, chosen by the sender as the finest at which its largest length
/// fits 16 bits. That keeps an absolute precision of about 1/32,768 of the
/// coordinate's largest length (3 µs for a 100 ms one), which is what a
/// distance needs, in half the bytes of 32-bit floats. NaN and infinities
/// cannot be written; [`PackedCoordinate::unpack`] refuses a scale outside
/// [`PackedCoordinate::MIN_SCALE`, `MAX_SCALE`] and a dimensionality over
/// [`MAX_DIMENSIONS`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackedCoordinate {
    /// Lengths are multiples of 2^-scale seconds.
    pub scale: u8,
    /// The error estimate, in hundredths.
    pub error: u8,
    /// The Euclidean components, then the height, then the adjustment:
    /// `i16`, little-endian.
    pub lengths: Vec<[u8; 2]>,
}

impl PackedCoordinate {
    /// Coarsest scale: 2^-11 s units, so lengths up to 16 s.
    pub const MIN_SCALE: u8 = 11;
    /// Finest scale: 2^-40 s units (about a picosecond); finer says nothing.
    pub const MAX_SCALE: u8 = 40;
    /// Largest error the packed form carries.
    pub const MAX_ERROR: f64 = 2.55;

    /// The packed form of a valid coordinate (`None` for an invalid one).
    pub fn pack(coordinate: &Coordinate) -> Option<PackedCoordinate> {
        if !coordinate.is_valid() {
            return None;
        }
        let lengths = || coordinate.vec.iter().chain([&coordinate.height, &coordinate.adjustment]).copied();
        let largest = lengths().fold(0.0f64, |m, x| m.max(x.abs()));
        // The finest scale at which the largest length still fits an i16.
        let mut scale = Self::MAX_SCALE;
        while scale > Self::MIN_SCALE && largest * 2f64.powi(i32::from(scale)) > 32_767.0 {
            scale -= 1;
        }
        let unit = 2f64.powi(i32::from(scale));
        #[allow(clippy::cast_possible_truncation)] // clamped to the i16 range first
        let quantise = |x: f64| ((x * unit).round().clamp(-32_768.0, 32_767.0) as i16).to_le_bytes();
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // clamped to 0..=255
        let error = (coordinate.error * 100.0).round().clamp(0.0, 255.0) as u8;
        Some(PackedCoordinate { scale, error, lengths: lengths().map(quantise).collect() })
    }

    /// The coordinate, if the packed form is well formed: a scale in range,
    /// one to [`MAX_DIMENSIONS`] components plus height and adjustment, and
    /// a height that is not negative.
    pub fn unpack(&self) -> Option<Coordinate> {
        if !(Self::MIN_SCALE..=Self::MAX_SCALE).contains(&self.scale)
            || !(3..=MAX_DIMENSIONS + 2).contains(&self.lengths.len())
        {
            return None;
        }
        let unit = 2f64.powi(-i32::from(self.scale));
        let mut lengths: Vec<f64> = self.lengths.iter().map(|b| f64::from(i16::from_le_bytes(*b)) * unit).collect();
        let adjustment = lengths.pop()?;
        let height = lengths.pop()?;
        let coordinate = Coordinate { vec: lengths, error: f64::from(self.error) / 100.0, adjustment, height };
        coordinate.is_valid().then_some(coordinate)
    }

    /// Dimensions it claims (its length count less height and adjustment).
    pub fn dimensionality(&self) -> usize {
        self.lengths.len().saturating_sub(2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(i: u64) -> NodeId {
        NodeId::from_index(i)
    }

    fn ms(x: f64) -> Duration {
        Duration::from_secs_f64(x / 1e3)
    }

    #[test]
    fn serf_defaults_validate_and_bad_fields_are_named() {
        assert_eq!(CoordinateConfig::serf().validate(), Ok(()));
        assert_eq!(CoordinateConfig::shoal().validate(), Ok(()));
        let bad = CoordinateConfig { dimensionality: 0, ..CoordinateConfig::serf() };
        assert_eq!(bad.validate().map_err(|e| e.field), Err("dimensionality"));
        let bad = CoordinateConfig { gravity_rho: f64::NAN, ..CoordinateConfig::serf() };
        assert_eq!(bad.validate().map_err(|e| e.field), Err("gravity_rho"));
        let bad = CoordinateConfig { share_one_in: 0, ..CoordinateConfig::serf() };
        assert_eq!(bad.validate().map_err(|e| e.field), Err("share_one_in"));
    }

    /// Two nodes 50 ms apart find it, as in Serf's client test.
    #[test]
    fn two_nodes_learn_their_distance() {
        let config = CoordinateConfig::serf();
        let (mut a, mut b) = (Vivaldi::new(config.clone(), 1), Vivaldi::new(config, 2));
        for _ in 0..200 {
            let b_now = b.coordinate().clone();
            a.observe(id(2), &b_now, ms(50.0)).expect("valid sample");
            let a_now = a.coordinate().clone();
            b.observe(id(1), &a_now, ms(50.0)).expect("valid sample");
        }
        let estimate = estimate_rtt(a.coordinate(), b.coordinate()).expect("same dimensions");
        assert!((estimate.as_secs_f64() - 0.050).abs() < 0.001, "{estimate:?}");
        assert!(a.coordinate().error < 0.1, "{}", a.coordinate().error);
    }

    /// Serf's `TestClient_Update` geometry: a node 200 ms from one at the
    /// origin moves along one axis; the latency filter takes the median.
    #[test]
    fn the_latency_filter_takes_the_median() {
        let mut v = Vivaldi::new(CoordinateConfig::serf(), 7);
        let other = Coordinate::origin(&CoordinateConfig::serf());
        v.observe(id(1), &other, ms(10.0)).expect("valid");
        v.observe(id(1), &other, ms(12.0)).expect("valid");
        let before = v.coordinate().clone();
        // The median of (10, 12, 1000) is 12 ms: one sample of a second
        // does not throw the coordinate out.
        v.observe(id(1), &other, ms(1000.0)).expect("valid");
        let moved = estimate_rtt(&before, v.coordinate()).expect("valid");
        assert!(moved < ms(20.0), "{moved:?}");
        // A fourth sample pushes the 10 ms one out: (12, 1000, 1000).
        v.observe(id(1), &other, ms(1000.0)).expect("valid");
        let moved = estimate_rtt(&before, v.coordinate()).expect("valid");
        assert!(moved > ms(100.0), "{moved:?}");
    }

    #[test]
    fn bad_samples_are_refused_and_change_nothing() {
        let config = CoordinateConfig::serf();
        let mut v = Vivaldi::new(config.clone(), 1);
        let mut nan = Coordinate::origin(&config);
        nan.vec[3] = f64::NAN;
        let mut huge = Coordinate::origin(&config);
        huge.height = 1e9;
        let short = Coordinate { vec: vec![0.0; 4], ..Coordinate::origin(&config) };
        for bad in [nan, huge, short] {
            assert_eq!(v.observe(id(2), &bad, ms(5.0)), Err(SampleError::BadCoordinate));
        }
        let origin = Coordinate::origin(&config);
        assert!(matches!(v.observe(id(2), &origin, Duration::from_secs(11)), Err(SampleError::RttOutOfRange(_))));
        assert_eq!(v.samples(), 0);
        assert_eq!(v.coordinate(), &origin);
    }

    #[test]
    fn the_same_seed_moves_the_same_way() {
        let run = |seed| {
            let mut v = Vivaldi::new(CoordinateConfig::serf(), seed);
            let origin = Coordinate::origin(&CoordinateConfig::serf());
            for i in 0..10 {
                v.observe(id(i), &origin, ms(20.0 + i as f64)).expect("valid");
            }
            v.coordinate().clone()
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
    }

    #[test]
    fn packing_keeps_lengths_to_a_few_microseconds() {
        let coordinate = Coordinate {
            vec: vec![0.081, -0.0423, 0.0001, 0.0, -0.15, 0.02, 0.003, -0.0007],
            error: 0.137,
            adjustment: -0.0004,
            height: 0.0012,
        };
        let packed = PackedCoordinate::pack(&coordinate).expect("valid");
        assert_eq!(crate::codec::encoded_len(&packed), 23, "scale, error, count, 10 lengths");
        let back = packed.unpack().expect("well formed");
        for (a, b) in coordinate.vec.iter().zip(&back.vec) {
            assert!((a - b).abs() < 5e-6, "{a} {b}");
        }
        assert!((back.error - 0.14).abs() < 1e-9);
        let exact = estimate_rtt(&coordinate, &coordinate.clone()).expect("valid");
        let rebuilt = estimate_rtt(&back, &back.clone()).expect("valid");
        assert!(exact.abs_diff(rebuilt) < Duration::from_micros(10));
        // The origin packs at the finest scale and comes back exactly.
        let origin = Coordinate::origin(&CoordinateConfig::serf());
        let packed = PackedCoordinate::pack(&origin).expect("valid");
        assert!(packed.unpack().expect("well formed").vec.iter().all(|x| *x == 0.0));
    }

    #[test]
    fn malformed_packed_coordinates_are_refused() {
        let good = PackedCoordinate::pack(&Coordinate::origin(&CoordinateConfig::serf())).expect("valid");
        let scale = |scale| PackedCoordinate { scale, ..good.clone() };
        assert_eq!(scale(10).unpack(), None, "lengths up to 32 s: too coarse");
        assert_eq!(scale(41).unpack(), None);
        let lengths = |n| PackedCoordinate { lengths: vec![[0, 0]; n], ..good.clone() };
        assert_eq!(lengths(2).unpack(), None, "no dimension");
        assert_eq!(lengths(MAX_DIMENSIONS + 3).unpack(), None);
        let mut negative_height = good.clone();
        let at = negative_height.lengths.len() - 2;
        negative_height.lengths[at] = (-5i16).to_le_bytes();
        assert_eq!(negative_height.unpack(), None);
        let nan = Coordinate { error: f64::NAN, ..Coordinate::origin(&CoordinateConfig::serf()) };
        assert_eq!(PackedCoordinate::pack(&nan), None);
    }

    proptest::proptest! {
        /// Whatever the bytes, unpacking never panics, and what it accepts
        /// is valid.
        #[test]
        fn unpacking_anything_is_safe(scale: u8, error: u8, lengths in proptest::collection::vec(proptest::prelude::any::<[u8; 2]>(), 0..20)) {
            if let Some(c) = (PackedCoordinate { scale, error, lengths }).unpack() {
                proptest::prop_assert!(c.is_valid());
            }
        }
    }
}
