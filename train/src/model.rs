//! The default encoder: a small residual CNN for Raspberry-Pi-class CPUs.
//!
//! One struct per block, every parameter under a named VarStore path (`stem/conv`,
//! `block1/conv1`, `head/fc`, ...). Both branches of the Siamese network are this one module called
//! twice (or once on a batch holding both sides), so the twins share weights by construction.
//!
//! Shapes for the default 1×64×64 grey input:
//! ```text
//! stem    3×3 conv 1→c1, BN, PReLU           N×c1×64×64
//! block1  residual, stride 2, c1→c2          N×c2×32×32
//! block2  residual, stride 2, c2→c3          N×c3×16×16
//! block3  residual, stride 2, c3→c4          N×c4×8×8
//! head    1×1 conv c4→c5, BN, PReLU,         N×c5×8×8
//!         flatten, dropout, FC → D, BN1d     N×D      (the "embedding" layer)
//! output  L2 normalisation                   N×D, unit rows
//! ```

use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// Architecture hyper-parameters (saved with every checkpoint).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchConfig {
    /// Input channels (1 grey, 3 colour).
    pub in_channels: i64,
    /// Input side in pixels (square).
    pub input_size: i64,
    /// Channels of stem, block1, block2, block3, head.
    pub widths: [i64; 5],
    /// Embedding dimension.
    pub embedding_dim: i64,
    /// Dropout before the FC layer.
    pub dropout: f64,
}

impl Default for ArchConfig {
    fn default() -> Self {
        Self { in_channels: 1, input_size: 64, widths: [24, 48, 96, 128, 32], embedding_dim: 128, dropout: 0.2 }
    }
}

/// PReLU with one learned slope per channel (`prelu/weight`).
#[derive(Debug)]
pub struct PRelu {
    pub weight: Tensor,
}

impl PRelu {
    fn new(p: nn::Path, c: i64) -> Self {
        Self { weight: p.var("weight", &[c], nn::Init::Const(0.25)) }
    }
    fn forward(&self, x: &Tensor) -> Tensor {
        x.prelu(&self.weight)
    }
}

fn conv(p: nn::Path, cin: i64, cout: i64, k: i64, stride: i64) -> nn::Conv2D {
    let cfg = nn::ConvConfig { stride, padding: k / 2, bias: false, ..Default::default() };
    nn::conv2d(p, cin, cout, k, cfg)
}

/// Convolution, batch-norm, PReLU.
#[derive(Debug)]
pub struct ConvBnPRelu {
    pub conv: nn::Conv2D,
    pub bn: nn::BatchNorm,
    pub act: PRelu,
}

impl ConvBnPRelu {
    fn new(p: &nn::Path, cin: i64, cout: i64, k: i64, stride: i64) -> Self {
        Self {
            conv: conv(p / "conv", cin, cout, k, stride),
            bn: nn::batch_norm2d(p / "bn", cout, Default::default()),
            act: PRelu::new(p / "act", cout),
        }
    }
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.act.forward(&x.apply(&self.conv).apply_t(&self.bn, train))
    }
}

/// Residual block: `PReLU(BN(conv3×3(PReLU(BN(conv3×3 stride s(x))))) + shortcut(x))`, the shortcut
/// a strided 1×1 conv + BN when the shape changes.
#[derive(Debug)]
pub struct ResBlock {
    pub conv1: ConvBnPRelu,
    pub conv2: nn::Conv2D,
    pub bn2: nn::BatchNorm,
    pub shortcut: Option<(nn::Conv2D, nn::BatchNorm)>,
    pub act: PRelu,
}

impl ResBlock {
    fn new(p: &nn::Path, cin: i64, cout: i64, stride: i64) -> Self {
        let shortcut = (stride != 1 || cin != cout).then(|| {
            (conv(p / "down_conv", cin, cout, 1, stride), nn::batch_norm2d(p / "down_bn", cout, Default::default()))
        });
        Self {
            conv1: ConvBnPRelu::new(&(p / "c1"), cin, cout, 3, stride),
            conv2: conv(p / "conv2", cout, cout, 3, 1),
            bn2: nn::batch_norm2d(p / "bn2", cout, Default::default()),
            shortcut,
            act: PRelu::new(p / "act", cout),
        }
    }
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let y = self.conv1.forward_t(x, train).apply(&self.conv2).apply_t(&self.bn2, train);
        let s = match &self.shortcut {
            Some((c, bn)) => x.apply(c).apply_t(bn, train),
            None => x.shallow_clone(),
        };
        self.act.forward(&(y + s))
    }
}

/// Embedding head: 1×1 conv, flatten, dropout, FC, BatchNorm1d.
#[derive(Debug)]
pub struct Head {
    pub reduce: ConvBnPRelu,
    pub fc: nn::Linear,
    pub bn: nn::BatchNorm,
    dropout: f64,
}

/// The encoder network.
#[derive(Debug)]
pub struct EmbeddingNet {
    pub config: ArchConfig,
    pub stem: ConvBnPRelu,
    pub blocks: [ResBlock; 3],
    pub head: Head,
}

impl EmbeddingNet {
    /// Builds the network under `p` (normally the VarStore root).
    pub fn new(p: &nn::Path, config: ArchConfig) -> Self {
        let [c0, c1, c2, c3, c4] = config.widths;
        let side = config.input_size / 8;
        let head = Head {
            reduce: ConvBnPRelu::new(&(p / "head" / "reduce"), c3, c4, 1, 1),
            fc: nn::linear(p / "head" / "fc", c4 * side * side, config.embedding_dim, Default::default()),
            bn: nn::batch_norm1d(p / "head" / "bn", config.embedding_dim, Default::default()),
            dropout: config.dropout,
        };
        Self {
            stem: ConvBnPRelu::new(&(p / "stem"), config.in_channels, c0, 3, 1),
            blocks: [
                ResBlock::new(&(p / "block1"), c0, c1, 2),
                ResBlock::new(&(p / "block2"), c1, c2, 2),
                ResBlock::new(&(p / "block3"), c2, c3, 2),
            ],
            head,
            config,
        }
    }

    /// The last hidden layer (before normalisation): what a classifier head reads.
    pub fn hidden_t(&self, x: &Tensor, train: bool) -> Tensor {
        let mut y = self.stem.forward_t(x, train);
        for b in &self.blocks {
            y = b.forward_t(&y, train);
        }
        let y = self.head.reduce.forward_t(&y, train).flatten(1, -1).dropout(self.head.dropout, train);
        y.apply(&self.head.fc).apply_t(&self.head.bn, train)
    }

    /// Unit-length embeddings, `N × D`.
    pub fn embed_t(&self, x: &Tensor, train: bool) -> Tensor {
        l2_normalise(&self.hidden_t(x, train))
    }

    /// Multiply-accumulate count of one forward pass (convolutions and FC).
    pub fn macs(&self) -> i64 {
        let c = &self.config;
        let [c0, c1, c2, c3, c4] = c.widths;
        let s = c.input_size;
        let px = |d: i64| (s / d) * (s / d);
        let res = |cin: i64, cout: i64, d: i64| px(d) * (cin * cout * 9 + cout * cout * 9 + cin * cout);
        px(1) * c.in_channels * c0 * 9
            + res(c0, c1, 2)
            + res(c1, c2, 4)
            + res(c2, c3, 8)
            + px(8) * c3 * c4
            + px(8) * c4 * c.embedding_dim
    }
}

impl ModuleT for EmbeddingNet {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.embed_t(x, train)
    }
}

/// Divides each row by its L2 norm (rows of zero stay zero).
pub fn l2_normalise(x: &Tensor) -> Tensor {
    x / x.norm_scalaropt_dim(2, [1], true).clamp_min(1e-12)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn tiny() -> (nn::VarStore, EmbeddingNet) {
        tch::manual_seed(1);
        let vs = nn::VarStore::new(Device::Cpu);
        let cfg =
            ArchConfig { in_channels: 1, input_size: 16, widths: [4, 4, 8, 8, 4], embedding_dim: 8, dropout: 0.0 };
        let net = EmbeddingNet::new(&vs.root(), cfg);
        (vs, net)
    }

    #[test]
    fn twin_branches_share_one_parameter_set() {
        let (vs, net) = tiny();
        let n = vs.trainable_variables().len();
        let a = Tensor::randn([4, 1, 16, 16], (Kind::Float, Device::Cpu));
        let b = Tensor::randn([4, 1, 16, 16], (Kind::Float, Device::Cpu));
        let w = vs.variables()["stem.conv.weight"].shallow_clone();
        // both branches: gradient flows from each into the same stem weights
        let loss = (net.embed_t(&a, true) - net.embed_t(&b, true)).square().sum(Kind::Float);
        loss.backward();
        let both = w.grad().copy();
        let _ = w.grad().zero_();
        let loss = (net.embed_t(&a, true) - net.embed_t(&b, true).detach()).square().sum(Kind::Float);
        loss.backward();
        let one = w.grad().copy();
        assert_eq!(vs.trainable_variables().len(), n, "calling the network twice creates no second parameter set");
        assert!((both - one).abs().max().double_value(&[]) > 1e-6, "the second branch also trains the shared weights");
        // the same input gives the same embedding through either branch
        let e1 = net.embed_t(&a, false);
        let e2 = net.embed_t(&a, false);
        assert!(e1.allclose(&e2, 0.0, 0.0, false));
        // unit length
        let norms = e1.norm_scalaropt_dim(2, [1], false);
        assert!((norms - 1.0).abs().max().double_value(&[]) < 1e-5);
    }

    #[test]
    fn named_parameter_paths() {
        let (vs, _) = tiny();
        let names = vs.variables();
        for n in [
            "stem.conv.weight",
            "block1.c1.conv.weight",
            "block3.down_conv.weight",
            "head.fc.weight",
            "head.bn.running_mean",
            "block2.act.weight",
        ] {
            assert!(names.contains_key(n), "missing {n}");
        }
        assert!(names.keys().all(|k| !k.contains("__")), "no automatic suffixes");
    }
}
