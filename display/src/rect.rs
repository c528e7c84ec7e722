//! Rectangles in surface pixels.

/// A rectangle, edges exclusive at right and bottom (Spice's order of fields). Always
/// well formed (`left <= right`, `top <= bottom`) when built with [`Rect::new`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Rect {
    pub left: u32,
    pub top: u32,
    pub right: u32,
    pub bottom: u32,
}

impl Rect {
    /// A rectangle from its edges, or `None` when it is inverted.
    pub fn new(left: u32, top: u32, right: u32, bottom: u32) -> Option<Rect> {
        (left <= right && top <= bottom).then_some(Rect {
            left,
            top,
            right,
            bottom,
        })
    }

    /// `(0, 0, width, height)`.
    pub fn of_size(width: u32, height: u32) -> Rect {
        Rect {
            left: 0,
            top: 0,
            right: width,
            bottom: height,
        }
    }

    pub fn width(&self) -> u32 {
        self.right.saturating_sub(self.left)
    }

    pub fn height(&self) -> u32 {
        self.bottom.saturating_sub(self.top)
    }

    /// Pixels covered.
    pub fn area(&self) -> u64 {
        u64::from(self.width()) * u64::from(self.height())
    }

    pub fn is_empty(&self) -> bool {
        self.width() == 0 || self.height() == 0
    }

    /// Whether every pixel of `other` is inside `self` (an empty `other` always is).
    pub fn contains(&self, other: &Rect) -> bool {
        other.is_empty()
            || (self.left <= other.left
                && self.top <= other.top
                && self.right >= other.right
                && self.bottom >= other.bottom)
    }

    /// The common part, or `None` when they do not overlap.
    pub fn intersect(&self, other: &Rect) -> Option<Rect> {
        let r = Rect {
            left: self.left.max(other.left),
            top: self.top.max(other.top),
            right: self.right.min(other.right),
            bottom: self.bottom.min(other.bottom),
        };
        (r.left < r.right && r.top < r.bottom).then_some(r)
    }

    /// The smallest rectangle holding both (an empty one adds nothing).
    pub fn union(&self, other: &Rect) -> Rect {
        if self.is_empty() {
            return *other;
        }
        if other.is_empty() {
            return *self;
        }
        Rect {
            left: self.left.min(other.left),
            top: self.top.min(other.top),
            right: self.right.max(other.right),
            bottom: self.bottom.max(other.bottom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry() {
        let a = Rect::new(0, 0, 10, 10).unwrap();
        let b = Rect::new(5, 5, 20, 8).unwrap();
        assert_eq!(a.intersect(&b), Rect::new(5, 5, 10, 8));
        assert_eq!(a.union(&b), Rect::new(0, 0, 20, 10).unwrap());
        assert!(a.contains(&Rect::new(1, 1, 10, 10).unwrap()));
        assert!(!a.contains(&b));
        assert!(Rect::new(3, 0, 2, 0).is_none());
        assert_eq!(a.intersect(&Rect::new(10, 0, 12, 5).unwrap()), None);
        assert_eq!(Rect::default().union(&b), b);
    }
}
