//! Confusion counts per image, accumulated per image and pooled.

use serde::Serialize;
use std::collections::BTreeMap;

/// Pixel counts of one binary prediction against its mask.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Confusion {
    /// Predicted and true foreground.
    pub tp: u64,
    /// Predicted foreground, true background.
    pub fp: u64,
    /// Predicted background, true foreground (`fn` is a keyword).
    pub fn_: u64,
    /// Predicted and true background.
    pub tn: u64,
}

/// Counts (predicted, true) pixel pairs, e.g. a prediction thresholded on the fly without a mask buffer.
impl FromIterator<(bool, bool)> for Confusion {
    fn from_iter<I: IntoIterator<Item = (bool, bool)>>(pairs: I) -> Self {
        let mut c = Confusion::default();
        for pair in pairs {
            match pair {
                (true, true) => c.tp += 1,
                (true, false) => c.fp += 1,
                (false, true) => c.fn_ += 1,
                (false, false) => c.tn += 1,
            }
        }
        c
    }
}

impl Confusion {
    /// pred, target: row-major binary masks of the same length.
    pub fn from_masks(pred: &[bool], target: &[bool]) -> Self {
        pred.iter().copied().zip(target.iter().copied()).collect()
    }

    /// Adds another image's counts (pooling).
    pub fn add(&mut self, o: &Confusion) {
        self.tp += o.tp;
        self.fp += o.fp;
        self.fn_ += o.fn_;
        self.tn += o.tn;
    }

    /// 2TP / (2TP + FP + FN); an empty prediction of an empty mask scores 1.
    pub fn dice(&self) -> f64 {
        let d = 2 * self.tp + self.fp + self.fn_;
        if d == 0 {
            1.0
        } else {
            2.0 * self.tp as f64 / d as f64
        }
    }

    /// TP / (TP + FP + FN); 1 when both are empty.
    pub fn iou(&self) -> f64 {
        let d = self.tp + self.fp + self.fn_;
        if d == 0 {
            1.0
        } else {
            self.tp as f64 / d as f64
        }
    }

    /// TP / (TP + FP); 1 when nothing is predicted and nothing is there, 0 when nothing is predicted but
    /// something is.
    pub fn precision(&self) -> f64 {
        let d = self.tp + self.fp;
        if d == 0 {
            if self.fn_ == 0 { 1.0 } else { 0.0 }
        } else {
            self.tp as f64 / d as f64
        }
    }

    /// TP / (TP + FN); 1 when the mask is empty.
    pub fn recall(&self) -> f64 {
        let d = self.tp + self.fn_;
        if d == 0 {
            1.0
        } else {
            self.tp as f64 / d as f64
        }
    }
}

/// Caption groups of QaTa-style reports: laterality and the number of infected areas.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct CaptionGroup {
    /// `bilateral`, `unilateral` or `unknown`.
    pub laterality: String,
    /// The stated number of infected areas as digits, or `unknown`.
    pub areas: String,
}

impl CaptionGroup {
    /// "Bilateral pulmonary infection, two infected areas, …" → (bilateral, 2).
    pub fn of(caption: &str) -> Self {
        let lower = caption.to_lowercase();
        let words: Vec<&str> = lower
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .collect();
        let laterality = if words.contains(&"bilateral") {
            "bilateral"
        } else if words.contains(&"unilateral") {
            "unilateral"
        } else {
            "unknown"
        };
        const NUMBERS: [&str; 7] = ["zero", "one", "two", "three", "four", "five", "six"];
        let areas = words
            .windows(2)
            .filter(|w| w[1].starts_with("infect") || w[1].starts_with("area"))
            .find_map(|w| {
                NUMBERS
                    .iter()
                    .position(|n| *n == w[0])
                    .map(|i| i.to_string())
                    .or_else(|| w[0].parse::<u32>().ok().map(|n| n.to_string()))
            })
            .unwrap_or_else(|| "unknown".into());
        CaptionGroup {
            laterality: laterality.into(),
            areas,
        }
    }
}

/// Metrics of a set of images in both conventions.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    /// Number of images.
    pub images: usize,
    /// Mean over images.
    pub dice_per_image: f64,
    /// IoU, mean over images.
    pub iou_per_image: f64,
    /// Precision, mean over images.
    pub precision_per_image: f64,
    /// Recall, mean over images.
    pub recall_per_image: f64,
    /// Pixels pooled over all images.
    pub dice_global: f64,
    /// IoU of the pixels pooled over all images.
    pub iou_global: f64,
    /// Mean HD95 in pixels over the images where it is defined (both masks non-empty).
    pub hd95_mean: Option<f64>,
    /// Images where HD95 is undefined (an empty mask) or was not computed.
    pub hd95_undefined: usize,
}

#[derive(Debug, Clone, Default)]
struct Group {
    pooled: Confusion,
    dice: f64,
    iou: f64,
    precision: f64,
    recall: f64,
    n: usize,
    hd: f64,
    hd_n: usize,
    hd_undefined: usize,
}

impl Group {
    fn add(&mut self, c: &Confusion, hd: Option<f64>) {
        self.pooled.add(c);
        self.dice += c.dice();
        self.iou += c.iou();
        self.precision += c.precision();
        self.recall += c.recall();
        self.n += 1;
        match hd {
            Some(h) => {
                self.hd += h;
                self.hd_n += 1;
            }
            None => self.hd_undefined += 1,
        }
    }

    fn summary(&self) -> Summary {
        let n = self.n.max(1) as f64;
        Summary {
            images: self.n,
            dice_per_image: self.dice / n,
            iou_per_image: self.iou / n,
            precision_per_image: self.precision / n,
            recall_per_image: self.recall / n,
            dice_global: self.pooled.dice(),
            iou_global: self.pooled.iou(),
            hd95_mean: (self.hd_n > 0).then(|| self.hd / self.hd_n as f64),
            hd95_undefined: self.hd_undefined,
        }
    }
}

/// Accumulates images into an overall summary and per caption group.
#[derive(Debug, Default)]
pub struct Accumulator {
    all: Group,
    groups: BTreeMap<String, Group>,
}

impl Accumulator {
    /// Adds one image. `hd95` is `None` where it is undefined or was not computed.
    pub fn add(&mut self, c: &Confusion, hd95: Option<f64>, caption: Option<&str>) {
        self.all.add(c, hd95);
        if let Some(cap) = caption {
            let g = CaptionGroup::of(cap);
            self.groups
                .entry(format!("laterality={}", g.laterality))
                .or_default()
                .add(c, hd95);
            self.groups
                .entry(format!("areas={}", g.areas))
                .or_default()
                .add(c, hd95);
        }
    }

    /// The summary over all images added.
    pub fn summary(&self) -> Summary {
        self.all.summary()
    }

    /// Summaries per caption group, keyed `laterality=…` and `areas=…`.
    pub fn groups(&self) -> BTreeMap<String, Summary> {
        self.groups
            .iter()
            .map(|(k, g)| (k.clone(), g.summary()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dice_iou_of_known_masks() {
        let p = [true, true, false, false];
        let t = [true, false, true, false];
        let c = Confusion::from_masks(&p, &t);
        assert_eq!((c.tp, c.fp, c.fn_, c.tn), (1, 1, 1, 1));
        assert!((c.dice() - 0.5).abs() < 1e-12);
        assert!((c.iou() - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(Confusion::from_masks(&[false], &[false]).dice(), 1.0);
        assert_eq!(Confusion::from_masks(&[false], &[true]).dice(), 0.0);
    }

    #[test]
    fn per_image_and_global_differ() {
        let mut acc = Accumulator::default();
        // A small lesion missed entirely and a large one found: per-image mean punishes the miss more.
        acc.add(
            &Confusion {
                tp: 0,
                fp: 0,
                fn_: 10,
                tn: 90,
            },
            None,
            Some("Unilateral pulmonary infection, one infected area, upper left lung."),
        );
        acc.add(&Confusion { tp: 90, fp: 0, fn_: 0, tn: 10 }, Some(0.0), Some("Bilateral pulmonary infection, two infected areas, upper left lung and lower right lung."));
        let s = acc.summary();
        assert!((s.dice_per_image - 0.5).abs() < 1e-12);
        assert!((s.dice_global - 180.0 / 190.0).abs() < 1e-12);
        assert_eq!(s.hd95_undefined, 1);
        let g = acc.groups();
        assert_eq!(g["laterality=bilateral"].images, 1);
        assert_eq!(g["areas=1"].dice_per_image, 0.0);
    }

    #[test]
    fn caption_groups() {
        let g = CaptionGroup::of(
            "Bilateral pulmonary infection, three infected areas, all left lung and lower right lung.",
        );
        assert_eq!(
            (g.laterality.as_str(), g.areas.as_str()),
            ("bilateral", "3")
        );
        let g = CaptionGroup::of("no text");
        assert_eq!(
            (g.laterality.as_str(), g.areas.as_str()),
            ("unknown", "unknown")
        );
    }
}
