//! The code a `#[task]` function becomes: the function itself (unchanged but for its
//! `#[default]` attributes), a type of the same name implementing `Task` (or `BlockingTask`
//! and `Task`), its arguments type, and the typed signature builder `name::new(..)`.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Attribute, ItemFn, ReturnType};

use crate::options::{Seconds, TaskAttr};
use crate::params::{self, Arg, Context, Param};

/// Expands `#[task(attr)] function`.
pub fn task(attr: TaskAttr, mut function: ItemFn) -> syn::Result<TokenStream> {
    check_signature(&function)?;
    let params = params::read(&mut function.sig)?;
    let ReturnType::Type(_, returns) = &function.sig.output else {
        return Err(syn::Error::new_spanned(
            &function.sig,
            "a task returns `Result<T, TaskError>`",
        ));
    };

    let vis = &function.vis;
    let ident = &function.sig.ident;
    let args_ident = format_ident!("{}Args", camel_case(&ident.unraw().to_string()));
    let name = match &attr.name {
        Some(name) => quote!(#name),
        None => {
            let fn_name = ident.unraw().to_string();
            quote!(::core::concat!(::core::module_path!(), "::", #fn_name))
        }
    };
    let cfgs: Vec<&Attribute> = function
        .attrs
        .iter()
        .filter(|attr| attr.path().is_ident("cfg"))
        .collect();
    let docs: Vec<&Attribute> = function
        .attrs
        .iter()
        .filter(|attr| attr.path().is_ident("doc"))
        .collect();
    let type_doc = if docs.is_empty() {
        let text = format!("The `{}` task (`#[task]`).", ident.unraw());
        quote!(#[doc = #text])
    } else {
        quote!(#(#docs)*)
    };

    let args: Vec<&Arg> = params
        .iter()
        .filter_map(|param| match param {
            Param::Arg(arg) => Some(&**arg),
            Param::Context(_) => None,
        })
        .collect();
    let support = quote!(::celeriac::task::macro_support);
    let args_type = args_type(vis, &args_ident, &args, &cfgs);
    let output = quote_spanned!(returns.span()=> <#returns as #support::TaskReturn>::Output);
    let into_result = quote_spanned!(returns.span()=> #support::TaskReturn::into_result);
    let options = options(&attr);
    let call_args = params.iter().map(|param| match param {
        Param::Context(Context::Borrowed) => quote!(&ctx),
        Param::Context(Context::Owned) => quote!(ctx),
        Param::Arg(arg) => {
            let field = &arg.ident;
            quote!(args.#field)
        }
    });
    let call = quote!(#ident(#(#call_args),*));
    let takes_context = params.iter().any(|p| matches!(p, Param::Context(_)));
    let ctx = if takes_context {
        quote!(ctx)
    } else {
        quote!(_ctx)
    };
    let args_binding = if args.is_empty() {
        quote!(_args)
    } else {
        quote!(args)
    };

    let task_impls = if function.sig.asyncness.is_some() {
        quote! {
            #(#cfgs)*
            impl ::celeriac::task::Task for #ident {
                const NAME: &'static str = #name;
                type Args = #args_ident;
                type Output = #output;

                async fn run(
                    #ctx: ::celeriac::task::TaskContext,
                    #args_binding: #args_ident,
                ) -> ::core::result::Result<Self::Output, ::celeriac::task::TaskError> {
                    #into_result(#call.await)
                }

                #[allow(clippy::needless_update)]
                fn options() -> ::celeriac::task::TaskOptions {
                    #options
                }
            }
        }
    } else {
        quote! {
            #(#cfgs)*
            impl ::celeriac::task::BlockingTask for #ident {
                const NAME: &'static str = #name;
                type Args = #args_ident;
                type Output = #output;

                fn run(
                    #ctx: ::celeriac::task::TaskContext,
                    #args_binding: #args_ident,
                ) -> ::core::result::Result<Self::Output, ::celeriac::task::TaskError> {
                    #into_result(#call)
                }

                #[allow(clippy::needless_update)]
                fn options() -> ::celeriac::task::TaskOptions {
                    #options
                }
            }

            #(#cfgs)*
            impl ::celeriac::task::Task for #ident {
                const NAME: &'static str = <Self as ::celeriac::task::BlockingTask>::NAME;
                const BLOCKING: bool = true;
                type Args = #args_ident;
                type Output = #output;

                fn run(
                    ctx: ::celeriac::task::TaskContext,
                    args: #args_ident,
                ) -> impl ::core::future::Future<
                    Output = ::core::result::Result<Self::Output, ::celeriac::task::TaskError>,
                > + ::core::marker::Send + 'static {
                    <::celeriac::task::Blocking<Self> as ::celeriac::task::Task>::run(ctx, args)
                }

                fn options() -> ::celeriac::task::TaskOptions {
                    <Self as ::celeriac::task::BlockingTask>::options()
                }
            }
        }
    };

    let builder = builder(vis, ident, &args_ident, &args, &cfgs);
    Ok(quote! {
        #function

        #type_doc
        #(#cfgs)*
        #[allow(non_camel_case_types)]
        #vis struct #ident {}

        #args_type

        #task_impls

        #builder
    })
}

/// A task is a plain, non-generic function.
fn check_signature(function: &ItemFn) -> syn::Result<()> {
    let sig = &function.sig;
    if !sig.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(
            &sig.generics,
            "a task function cannot be generic: its arguments are decoded from the message into concrete types",
        ));
    }
    if let Some(clause) = &sig.generics.where_clause {
        return Err(syn::Error::new_spanned(
            clause,
            "a task function cannot have a `where` clause",
        ));
    }
    if let Some(constness) = &sig.constness {
        return Err(syn::Error::new_spanned(
            constness,
            "a task cannot be a `const fn`",
        ));
    }
    if let Some(unsafety) = &sig.unsafety {
        return Err(syn::Error::new_spanned(
            unsafety,
            "a task cannot be `unsafe`",
        ));
    }
    if let Some(abi) = &sig.abi {
        return Err(syn::Error::new_spanned(
            abi,
            "a task cannot have an `extern` ABI",
        ));
    }
    if let Some(variadic) = &sig.variadic {
        return Err(syn::Error::new_spanned(
            variadic,
            "a task cannot be variadic",
        ));
    }
    Ok(())
}

/// `add_numbers` -> `AddNumbers`.
fn camel_case(snake: &str) -> String {
    snake
        .split('_')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|first| first.to_uppercase().chain(chars).collect::<String>())
                .unwrap_or_default()
        })
        .collect()
}

/// The arguments struct: one field per argument, in order (positional binding), named as
/// the parameter (keyword binding); optional ones have a serde default.
fn args_type(
    vis: &syn::Visibility,
    args_ident: &syn::Ident,
    args: &[&Arg],
    cfgs: &[&Attribute],
) -> TokenStream {
    let serde_path = "::celeriac::task::macro_support::serde";
    let support = quote!(::celeriac::task::macro_support);
    let mut default_fns = Vec::new();
    let fields = args.iter().map(|arg| {
        let field = &arg.ident;
        let ty = &arg.ty;
        let doc = format!("The argument `{}`.", field.unraw());
        let default = match &arg.default {
            Some(expr) => {
                let default_fn = format_ident!("__celeriac_default_{}", field.unraw());
                let value = match expr {
                    syn::Expr::Lit(syn::ExprLit {
                        lit: syn::Lit::Str(_),
                        ..
                    }) => quote_spanned!(expr.span()=> ::core::convert::Into::into(#expr)),
                    _ => quote_spanned!(expr.span()=> #expr),
                };
                default_fns.push(quote! {
                    #[doc(hidden)]
                    fn #default_fn() -> #ty {
                        #value
                    }
                });
                let path = format!("{args_ident}::{default_fn}");
                quote!(#[serde(default = #path)])
            }
            None if arg.optional => quote!(#[serde(default)]),
            None => quote!(),
        };
        quote! {
            #[doc = #doc]
            #default
            #vis #field: #ty
        }
    });
    let fields: Vec<TokenStream> = fields.collect();
    let doc = format!(
        "The arguments of the `{}` task: positional in this order, or by keyword (the field names).",
        args_ident.unraw()
    );
    let defaults = if default_fns.is_empty() {
        quote!()
    } else {
        quote! {
            #(#cfgs)*
            impl #args_ident {
                #(#default_fns)*
            }
        }
    };
    quote! {
        #[doc = #doc]
        #(#cfgs)*
        #[derive(#support::serde::Serialize, #support::serde::Deserialize)]
        #[serde(crate = #serde_path)]
        #vis struct #args_ident {
            #(#fields,)*
        }

        #defaults
    }
}

/// `name::new(args..)` and `name::try_new(args..)`: a `Signature` of this task.
fn builder(
    vis: &syn::Visibility,
    ident: &syn::Ident,
    args_ident: &syn::Ident,
    args: &[&Arg],
    cfgs: &[&Attribute],
) -> TokenStream {
    let names: Vec<&syn::Ident> = args.iter().map(|arg| &arg.ident).collect();
    let types = args.iter().map(|arg| &arg.ty);
    let params: Vec<TokenStream> = names
        .iter()
        .zip(types)
        .map(|(name, ty)| quote!(#name: #ty))
        .collect();
    let new_doc = format!(
        "A call of `{}` with these arguments (sent positionally), to send or to put in a \
         workflow; set call options with the `Signature`'s `with_*` methods.\n\n\
         # Panics\n\nWhen an argument cannot be encoded as JSON (a `Serialize` impl that \
         fails, a map with keys that are not strings), as `serde_json::json!` does; \
         `try_new` answers that error instead.",
        ident.unraw()
    );
    let try_doc = format!(
        "A call of `{}` with these arguments, or the error encoding them as JSON.",
        ident.unraw()
    );
    quote! {
        #(#cfgs)*
        impl #ident {
            #[doc = #new_doc]
            #[allow(clippy::too_many_arguments, clippy::new_ret_no_self)]
            #vis fn new(#(#params),*) -> ::celeriac::Signature {
                ::celeriac::task::macro_support::signature::<Self>(&#args_ident { #(#names),* })
            }

            #[doc = #try_doc]
            #[allow(clippy::too_many_arguments)]
            #vis fn try_new(
                #(#params),*
            ) -> ::core::result::Result<::celeriac::Signature, ::celeriac::SendError> {
                ::celeriac::Signature::of::<Self>(&#args_ident { #(#names),* })
            }
        }
    }
}

fn duration(seconds: &Seconds) -> TokenStream {
    let Seconds { secs, nanos } = seconds;
    quote!(::core::time::Duration::new(#secs, #nanos))
}

/// The body of `options()`: `TaskOptions` with what the attribute set, the rest default.
fn options(attr: &TaskAttr) -> TokenStream {
    let string = |text: &String| quote!(::std::string::String::from(#text));
    let mut fields: Vec<TokenStream> = Vec::new();
    let mut set = |field: &str, value: Option<TokenStream>| {
        if let Some(value) = value {
            let field = format_ident!("{field}");
            fields.push(quote!(#field: ::core::option::Option::Some(#value)));
        }
    };
    set("max_retries", attr.max_retries.map(|n| quote!(#n)));
    set("time_limit", attr.time_limit.as_ref().map(duration));
    set(
        "soft_time_limit",
        attr.soft_time_limit.as_ref().map(duration),
    );
    set("rate_limit", attr.rate_limit.as_ref().map(string));
    set("queue", attr.queue.as_ref().map(string));
    let flag = |value: Option<bool>| value.map(|flag| quote!(#flag));
    set("ignore_result", flag(attr.ignore_result));
    set(
        "store_errors_even_if_ignored",
        flag(attr.store_errors_even_if_ignored),
    );
    set("track_started", flag(attr.track_started));
    set("acks_late", flag(attr.acks_late));
    set(
        "acks_on_failure_or_timeout",
        flag(attr.acks_on_failure_or_timeout),
    );

    let backoff = &attr.backoff;
    let (min, max) = match &backoff.fixed {
        Some(fixed) => (Some(fixed), Some(fixed)),
        None => (backoff.min.as_ref(), backoff.max.as_ref()),
    };
    let mut backoff_fields = Vec::new();
    if let Some(min) = min {
        let min = duration(min);
        backoff_fields.push(quote!(min: #min));
    }
    if let Some(max) = max {
        let max = duration(max);
        backoff_fields.push(quote!(max: #max));
    }
    if let Some(jitter) = backoff.jitter {
        backoff_fields.push(quote!(jitter: #jitter));
    }
    if !backoff_fields.is_empty() {
        fields.push(quote! {
            retry_backoff: ::celeriac::task::RetryBackoff {
                #(#backoff_fields,)*
                ..::core::default::Default::default()
            }
        });
    }
    quote! {
        ::celeriac::task::TaskOptions {
            #(#fields,)*
            ..::core::default::Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::camel_case;

    #[test]
    fn camel_case_names() {
        assert_eq!(camel_case("add"), "Add");
        assert_eq!(camel_case("add_numbers"), "AddNumbers");
        assert_eq!(camel_case("_private__x"), "PrivateX");
    }
}
