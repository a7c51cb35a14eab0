//! The parameters of a `#[task]` function: each is the request context or an argument;
//! arguments are named (their names are the keyword names) and owned (they are decoded
//! from the message). Errors point at the parameter at fault.

use syn::{Attribute, Expr, FnArg, Ident, Meta, Pat, Signature, Type};

/// One argument of the task.
pub struct Arg {
    /// The parameter's name: the keyword name and the field of the arguments type.
    pub ident: Ident,
    /// Its type.
    pub ty: Type,
    /// `#[default = expr]`: the value when the caller does not give it.
    pub default: Option<Expr>,
    /// An `Option<T>`: `None` when the caller does not give it.
    pub optional: bool,
}

/// How the function takes the request context, if it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// `ctx: &TaskContext`.
    Borrowed,
    /// `ctx: TaskContext`.
    Owned,
}

/// One parameter, in order.
pub enum Param {
    /// The request context (Celery's `bind=True`).
    Context(Context),
    /// A task argument.
    Arg(Box<Arg>),
}

/// Reads the parameters of `sig` and removes the `#[default = ..]` attributes from it (they
/// are the macro's, not the compiler's). All the errors are reported together.
pub fn read(sig: &mut Signature) -> syn::Result<Vec<Param>> {
    let mut params = Vec::new();
    let mut errors: Option<syn::Error> = None;
    let mut context_seen = false;
    for input in sig.inputs.iter_mut() {
        let outcome = read_one(input).and_then(|param| {
            if let Param::Context(_) = param {
                if context_seen {
                    return Err(syn::Error::new_spanned(
                        &*input,
                        "a task takes the request context once",
                    ));
                }
                context_seen = true;
            }
            Ok(param)
        });
        match outcome {
            Ok(param) => params.push(param),
            Err(error) => match &mut errors {
                Some(all) => all.combine(error),
                None => errors = Some(error),
            },
        }
    }
    match errors {
        Some(errors) => Err(errors),
        None => Ok(params),
    }
}

fn read_one(input: &mut FnArg) -> syn::Result<Param> {
    let typed = match input {
        FnArg::Receiver(receiver) => {
            return Err(syn::Error::new_spanned(
                receiver,
                "a task is a free function: it cannot take `self`",
            ))
        }
        FnArg::Typed(typed) => typed,
    };
    let default = take_default(&mut typed.attrs)?;
    if let Some(context) = context_type(&typed.ty)? {
        if let Some(default) = default {
            return Err(syn::Error::new_spanned(
                default,
                "the request context has no default",
            ));
        }
        return Ok(Param::Context(context));
    }
    let ident =
        match &*typed.pat {
            Pat::Ident(pat) if pat.by_ref.is_none() && pat.subpat.is_none() => pat.ident.clone(),
            other => return Err(syn::Error::new_spanned(
                other,
                "a task parameter must be a plain name (`x: i64`): its name is the keyword name",
            )),
        };
    check_owned(&typed.ty)?;
    Ok(Param::Arg(Box::new(Arg {
        ident,
        optional: is_option(&typed.ty),
        ty: (*typed.ty).clone(),
        default,
    })))
}

/// Removes every `#[default ..]` parameter attribute (after an error, when the function is
/// emitted as written).
pub fn strip_defaults(sig: &mut Signature) {
    for input in sig.inputs.iter_mut() {
        if let FnArg::Typed(typed) = input {
            typed.attrs.retain(|attr| !attr.path().is_ident("default"));
        }
    }
}

/// Removes `#[default = expr]` from a parameter's attributes and answers the expression.
fn take_default(attrs: &mut Vec<Attribute>) -> syn::Result<Option<Expr>> {
    let mut default = None;
    let mut kept = Vec::with_capacity(attrs.len());
    for attr in attrs.drain(..) {
        if !attr.path().is_ident("default") {
            kept.push(attr);
            continue;
        }
        let Meta::NameValue(pair) = &attr.meta else {
            return Err(syn::Error::new_spanned(
                &attr,
                "write a parameter's default as `#[default = value]`",
            ));
        };
        if default.is_some() {
            return Err(syn::Error::new_spanned(
                &attr,
                "two defaults for one parameter",
            ));
        }
        default = Some(pair.value.clone());
    }
    *attrs = kept;
    Ok(default)
}

/// Whether `ty` is the request context (`TaskContext`, by value or by shared reference).
fn context_type(ty: &Type) -> syn::Result<Option<Context>> {
    match ty {
        Type::Reference(reference) if is_context(&reference.elem) => {
            if reference.mutability.is_some() {
                Err(syn::Error::new_spanned(
                    reference,
                    "take the request context as `&TaskContext` or `TaskContext`, not `&mut`",
                ))
            } else {
                Ok(Some(Context::Borrowed))
            }
        }
        ty if is_context(ty) => Ok(Some(Context::Owned)),
        _ => Ok(None),
    }
}

fn is_context(ty: &Type) -> bool {
    last_segment(ty).is_some_and(|segment| segment.ident == "TaskContext")
}

fn is_option(ty: &Type) -> bool {
    last_segment(ty).is_some_and(|segment| {
        segment.ident == "Option" && !matches!(segment.arguments, syn::PathArguments::None)
    })
}

fn last_segment(ty: &Type) -> Option<&syn::PathSegment> {
    match ty {
        Type::Path(path) if path.qself.is_none() => path.path.segments.last(),
        Type::Group(group) => last_segment(&group.elem),
        Type::Paren(paren) => last_segment(&paren.elem),
        _ => None,
    }
}

/// An argument is decoded from the message, so it owns its value and has a concrete type.
fn check_owned(ty: &Type) -> syn::Result<()> {
    match ty {
        Type::Reference(_) => Err(syn::Error::new_spanned(
            ty,
            "a task argument is decoded from the message: take an owned type (`String`, `Vec<T>`), not a reference",
        )),
        Type::ImplTrait(_) | Type::Infer(_) => Err(syn::Error::new_spanned(
            ty,
            "a task argument needs a concrete type (it is decoded from the message)",
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(text: &str) -> Result<Vec<Param>, String> {
        let mut sig: Signature = syn::parse_str(text).unwrap();
        read(&mut sig).map_err(|error| error.to_string())
    }

    #[test]
    fn arguments_context_and_defaults() {
        let read = params(
            "fn f(ctx: &celeriac::TaskContext, mut x: i64, label: Option<String>, #[default = 3] n: u8)",
        )
        .unwrap();
        assert!(matches!(read[0], Param::Context(Context::Borrowed)));
        let Param::Arg(x) = &read[1] else { panic!() };
        assert_eq!((x.ident.to_string(), x.optional), ("x".into(), false));
        let Param::Arg(label) = &read[2] else {
            panic!()
        };
        assert!(label.optional && label.default.is_none());
        let Param::Arg(n) = &read[3] else { panic!() };
        assert!(n.default.is_some());
        assert!(matches!(
            params("fn f(ctx: TaskContext)").unwrap()[0],
            Param::Context(Context::Owned)
        ));
    }

    #[test]
    fn default_attributes_are_removed() {
        let mut sig: Signature = syn::parse_str("fn f(#[default = 1] n: u8)").unwrap();
        read(&mut sig).unwrap();
        let FnArg::Typed(typed) = &sig.inputs[0] else {
            panic!()
        };
        assert!(typed.attrs.is_empty());
    }

    #[test]
    fn errors() {
        let table = [
            ("fn f(&self)", "cannot take `self`"),
            ("fn f((a, b): (i64, i64))", "must be a plain name"),
            ("fn f(ref a: i64)", "must be a plain name"),
            ("fn f(name: &str)", "take an owned type"),
            ("fn f(it: impl Serialize)", "needs a concrete type"),
            (
                "fn f(a: &TaskContext, b: TaskContext)",
                "takes the request context once",
            ),
            ("fn f(a: &mut TaskContext)", "not `&mut`"),
            ("fn f(#[default(1)] n: u8)", "`#[default = value]`"),
        ];
        for (text, expected) in table {
            let Err(error) = params(text) else {
                panic!("{text}: accepted")
            };
            assert!(error.contains(expected), "{text}: {error}");
        }
    }
}
