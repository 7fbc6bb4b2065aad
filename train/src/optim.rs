//! Adam (with L2 weight decay) and SGD with momentum, written on tensors so their state can be
//! checkpointed and a resumed run continues exactly where it stopped.

use tch::{Kind, Tensor};

/// Which optimiser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
pub enum OptimizerKind {
    Adam,
    Sgd,
}

/// Optimiser over named parameters, with its moment tensors.
pub struct Optimizer {
    kind: OptimizerKind,
    params: Vec<(String, Tensor)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    /// Steps taken (for Adam's bias correction).
    pub steps: i64,
    weight_decay: f64,
}

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPS: f64 = 1e-8;
const MOMENTUM: f64 = 0.9;

impl Optimizer {
    /// An optimiser over `params` (trainable, `requires_grad`).
    pub fn new(kind: OptimizerKind, params: Vec<(String, Tensor)>, weight_decay: f64) -> Self {
        let zeros = |p: &Vec<(String, Tensor)>| p.iter().map(|(_, t)| t.zeros_like()).collect();
        Self { kind, m: zeros(&params), v: zeros(&params), params, steps: 0, weight_decay }
    }

    /// Clears the gradients.
    pub fn zero_grad(&mut self) {
        for (_, p) in &mut self.params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
    }

    /// One update with learning rate `lr`.
    pub fn step(&mut self, lr: f64) {
        self.steps += 1;
        let t = self.steps as f64;
        tch::no_grad(|| {
            for (i, (_, p)) in self.params.iter_mut().enumerate() {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let g = if self.weight_decay > 0.0 { &g + &*p * self.weight_decay } else { g };
                match self.kind {
                    OptimizerKind::Adam => {
                        let _ = self.m[i].g_mul_scalar_(BETA1).g_add_(&(&g * (1.0 - BETA1)));
                        let _ = self.v[i].g_mul_scalar_(BETA2).g_add_(&(g.square() * (1.0 - BETA2)));
                        let mhat = &self.m[i] / (1.0 - BETA1.powf(t));
                        let vhat = &self.v[i] / (1.0 - BETA2.powf(t));
                        let _ = p.g_sub_(&(mhat / (vhat.sqrt() + EPS) * lr));
                    }
                    OptimizerKind::Sgd => {
                        let _ = self.m[i].g_mul_scalar_(MOMENTUM).g_add_(&g);
                        let _ = p.g_sub_(&(&self.m[i] * lr));
                    }
                }
            }
        });
    }

    /// Moment tensors by name, for checkpoints.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::with_capacity(2 * self.params.len() + 1);
        for (i, (n, _)) in self.params.iter().enumerate() {
            out.push((format!("m.{n}"), self.m[i].shallow_clone()));
            out.push((format!("v.{n}"), self.v[i].shallow_clone()));
        }
        out.push(("steps".into(), Tensor::from(self.steps)));
        out
    }

    /// Restores moments saved by [`Optimizer::state`].
    pub fn load_state(&mut self, state: &[(String, Tensor)]) -> anyhow::Result<()> {
        let get = |name: &str| {
            state
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t.shallow_clone())
                .ok_or_else(|| anyhow::anyhow!("optimiser state lacks {name}"))
        };
        tch::no_grad(|| -> anyhow::Result<()> {
            for (i, (n, _)) in self.params.iter().enumerate() {
                let dev = self.m[i].device();
                self.m[i].copy_(&get(&format!("m.{n}"))?.to_device(dev));
                self.v[i].copy_(&get(&format!("v.{n}"))?.to_device(dev));
            }
            Ok(())
        })?;
        self.steps = get("steps")?.to_kind(Kind::Int64).int64_value(&[]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adam_first_step_moves_by_lr_against_the_gradient_sign() {
        let p = Tensor::from_slice(&[1.0f32, -2.0]).set_requires_grad(true);
        let mut opt = Optimizer::new(OptimizerKind::Adam, vec![("p".into(), p.shallow_clone())], 0.0);
        let loss = (&p * Tensor::from_slice(&[3.0f32, -0.5])).sum(Kind::Float);
        opt.zero_grad();
        loss.backward();
        opt.step(0.1);
        // bias-corrected first Adam step is lr · sign(g)
        let v = Vec::<f32>::try_from(&p.detach()).unwrap();
        assert!((v[0] - 0.9).abs() < 1e-5 && (v[1] + 1.9).abs() < 1e-5, "{v:?}");
    }
}
